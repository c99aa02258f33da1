# gnuplot script for bench_scale's data: gnuplot -e "d='scale.dat'; o='scale.png'" scale.gp
set terminal pngcairo size 1500,560 noenhanced
set output o
set multiplot layout 1,3 title "pviommu at scale: cost per call (ns, log scale), one run"
set logscale y
set grid
set key below maxrows 3
set ylabel "ns per call"
set logscale x
set format x "%.0s%c"
set xlabel "live mappings (1 VM, 1 device)"
set y2label "memory per live mapping (B)"
set logscale y2
set y2tics
set format y2 "%.0s%c"
plot d index 0 using 1:2 with linespoints title "map (BPF)", \
     d index 0 using 1:3 with linespoints title "unmap (BPF)", \
     d index 0 using 1:7 with linespoints title "map+unmap in a batch (BPF)", \
     d index 0 using 1:4 with linespoints title "check (BPF)", \
     d index 0 using 1:5 with linespoints title "check (in-process)", \
     d index 0 using 1:6 axes x1y2 with linespoints dashtype 2 title "memory/mapping (right)"
unset y2label
unset y2tics
unset logscale y2
set format x "%g"
set xrange [0.8:80]
set xlabel "devices per VM (16k mappings; 16 page-bit lanes)"
plot d index 1 using 1:2 with linespoints title "map (BPF)", \
     d index 1 using 1:3 with linespoints title "unmap (BPF)", \
     d index 1 using 1:4 with linespoints title "check (BPF)", \
     d index 1 using 1:5 with linespoints title "check (in-process)"
set xlabel "VMs (16k mappings in all)"
plot d index 2 using 1:2 with linespoints title "map (BPF)", \
     d index 2 using 1:3 with linespoints title "unmap (BPF)", \
     d index 2 using 1:4 with linespoints title "check (BPF)", \
     d index 2 using 1:5 with linespoints title "check (in-process)"
unset multiplot
