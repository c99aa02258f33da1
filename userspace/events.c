// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* events.c - the event ring: violations, refused hypercalls, domains coming and going */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "pviommuctl.h"

/* ---- events ----------------------------------------------------------------------- */
static volatile sig_atomic_t stop;
static __u64 ev_count, ev_max;
static __s64 ev_wall_off;	/* CLOCK_REALTIME - CLOCK_MONOTONIC (ts_ns is the latter) */

/* an event's time as RFC 3339 UTC, for log shippers */
static char *ev_time(__u64 ts_ns, char *buf, size_t len)
{
	__s64 ns = (__s64)ts_ns + ev_wall_off;
	time_t sec = (time_t)(ns / 1000000000);
	struct tm tm;
	size_t n;

	if (!gmtime_r(&sec, &tm) || !(n = strftime(buf, len, "%Y-%m-%dT%H:%M:%S", &tm)))
		return strcpy(buf, "-");
	snprintf(buf + n, len - n, ".%06lldZ", (long long)(ns % 1000000000 / 1000));
	return buf;
}

static void on_sig(int sig)
{
	(void)sig;
	stop = 1;
}

static int on_event(void *ctx, void *data, size_t len)
{
	const struct pviommu_event *e = data;
	char b[16], tb[40];

	if (len < sizeof(*e))
		return 0;
	if (json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_u64(&w, "ts_ns", e->ts_ns);
		jw_str(&w, "type", pv_event_type_str(e->type));
		jw_u64(&w, "pid", e->domain);
		jw_u64(&w, "tid", e->tid);
		jw_str(&w, "bdf", pv_fmt_bdf(e->bdf, b));
		jw_u64(&w, "addr", e->addr);
		jw_u64(&w, "len", e->len);
		jw_str(&w, "access", pv_perm_str(e->perm));
		jw_str(&w, "op", pv_op_str(e->op));
		jw_int(&w, "err", e->err);
		jw_str(&w, "reason", e->type == PVIOMMU_EV_VIOLATION ? pv_verdict_str(-e->err) :
				     e->type == PVIOMMU_EV_FAILED ? pv_fail_str(e->perm) :
				     e->err ? strerror(-e->err) : "-");
		jw_str(&w, "action", pv_action_str(e->action));
		jw_str(&w, "plane", pv_plane_str(e->plane));
		jw_str(&w, "time", ev_time(e->ts_ns, tb, sizeof(tb)));
		jw_end(&w);
	}
	else if (e->type == PVIOMMU_EV_VIOLATION)
		printf("%llu.%06llu violation pid=%u bdf=%s addr=0x%llx len=%llu %s reason=%s action=%s plane=%s\n",
		       (unsigned long long)(e->ts_ns / 1000000000),
		       (unsigned long long)(e->ts_ns % 1000000000 / 1000), e->domain,
		       pv_fmt_bdf(e->bdf, b), (unsigned long long)e->addr,
		       (unsigned long long)e->len,
		       e->perm & PVIOMMU_PERM_WRITE ? "write" : "read",
		       pv_verdict_str(-e->err), pv_action_str(e->action),
		       pv_plane_str(e->plane));
	else if (e->type == PVIOMMU_EV_LIMITED)
		printf("%llu.%06llu events-limited pid=%u: %llu events of its calls not sent in its last window (over %u a second)\n",
		       (unsigned long long)(e->ts_ns / 1000000000),
		       (unsigned long long)(e->ts_ns % 1000000000 / 1000), e->domain,
		       (unsigned long long)e->len, PVIOMMU_EV_BUDGET);
	else if (e->type == PVIOMMU_EV_FAILED)
		printf("%llu.%06llu failed-closed pid=%u %s%s after op=%s err=%s: %s; its transfers are denied\n",
		       (unsigned long long)(e->ts_ns / 1000000000),
		       (unsigned long long)(e->ts_ns % 1000000000 / 1000), e->domain,
		       e->bdf == ~0u ? "every device" : "bdf=",
		       e->bdf == ~0u ? "" : pv_fmt_bdf(e->bdf, b), pv_op_str(e->op),
		       e->err ? strerror(-e->err) : "ok", pv_fail_str(e->perm));
	else
		printf("%llu.%06llu %s pid=%u bdf=%s op=%s iova=0x%llx size=%llu err=%s plane=%s\n",
		       (unsigned long long)(e->ts_ns / 1000000000),
		       (unsigned long long)(e->ts_ns % 1000000000 / 1000),
		       pv_event_type_str(e->type), e->domain, pv_fmt_bdf(e->bdf, b),
		       pv_op_str(e->op), (unsigned long long)e->addr,
		       (unsigned long long)e->len, e->err ? strerror(-e->err) : "ok",
		       pv_plane_str(e->plane));
	fflush(stdout);
	if (ev_max && ++ev_count >= ev_max)
		stop = 1;
	return 0;
}

/* the id of the pinned event ring, 0 if there is none */
static __u32 events_id(int fd)
{
	struct bpf_map_info info = {};
	__u32 len = sizeof(info), id = 0;
	int own = fd < 0;

	if (own && (fd = pv_obj_get(NULL, PVIOMMU_MAP_EVENTS, 1)) < 0)
		return 0;
	if (!bpf_obj_get_info_by_fd(fd, &info, &len))
		id = info.id;
	if (own)
		close(fd);
	return id;
}

/* --follow says on stderr what it waits for, also with -j (stdout stays events only) */
static void follow_note(const char *what)
{
	fprintf(stderr, "note: %s\n", what);
}

static void events_usage(void)
{
	printf("Usage: pviommuctl [-j] events [--follow] [--count N] [--timeout SEC]\n"
	       "  Follow the event ring buffer, one line per event: violations\n"
	       "  (pid, device, address, length, direction, reason, action),\n"
	       "  refused hypercalls, full tables, domains coming and going.\n"
	       "  With -j, one JSON object per line (JSON lines), with \"time\" (RFC 3339).\n"
	       "  Stops after N events, after SEC seconds, or on SIGINT/SIGTERM (exit 0).\n"
	       "  --follow  for log shippers and services: start before pviommu is loaded\n"
	       "            and wait for it, and keep following across unload and load\n"
	       "            (the new event ring is picked up within a second).\n");
}

int cmd_events(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "count", required_argument, 0, 'c' },
		{ "timeout", required_argument, 0, 't' },
		{ "follow", no_argument, 0, 'f' },
		{ "help", no_argument, 0, 'h' },
		{ 0 }
	};
	struct ring_buffer *rb = NULL;
	__u64 timeout = 0, last_look = 0, now;
	struct timespec t0, t, rt;
	int c, fd = -1, err = 0, follow = 0, waiting = 0;
	__u32 id = 0;
	struct cmd_opts o = { .cmd = "events", .spec = "c:t:f", .lo = lo, .usage = events_usage };

	while ((c = cmd_getopt(&o, argc, argv)) > 0) {
		switch (c) {
		case 'c':
			if (pv_parse_u64(optarg, &ev_max) || !ev_max) {
				p_err("what is '%s'? --count wants a positive number", optarg);
				return 1;
			}
			break;
		case 't':
			if (pv_parse_u64(optarg, &timeout)) {
				p_err("what is '%s'? --timeout wants seconds", optarg);
				return 1;
			}
			break;
		case 'f':
			follow = 1;
			break;
		}
	}
	if (c < 0)
		return o.rc;
	if (optind < argc) {
		p_err("what is '%s'? (see 'pviommuctl events --help')", argv[optind]);
		return 1;
	}
	if ((err = need_root()))
		return err;
	if (!follow && !loaded())
		return not_loaded();
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	setvbuf(stdout, NULL, _IOLBF, 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_REALTIME, &rt);
	ev_wall_off = ((__s64)rt.tv_sec - t0.tv_sec) * 1000000000 + (rt.tv_nsec - t0.tv_nsec);
	while (!stop) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (timeout && (__u64)(t.tv_sec - t0.tv_sec) >= timeout)
			break;
		now = (__u64)t.tv_sec * 1000 + t.tv_nsec / 1000000;
		if (!rb) {
			fd = pv_obj_get(NULL, PVIOMMU_MAP_EVENTS, 0);
			if (fd < 0 && !follow) {
				p_err("cannot open %s: %s", PVIOMMU_MAP_EVENTS, strerror(-fd));
				return 1;
			}
			if (fd < 0) {
				if (!waiting++)
					follow_note("pviommu is not loaded: waiting for 'pviommuctl load'");
				usleep(200000);
				continue;
			}
			rb = ring_buffer__new(fd, on_event, NULL, NULL);
			if (!rb) {
				err = -errno;
				p_err("ring buffer: %s", strerror(-err));
				close(fd);
				return 1;
			}
			id = events_id(fd);
			if (waiting)
				follow_note("pviommu is loaded: following its events");
			waiting = 0;
			last_look = now;
		}
		err = ring_buffer__poll(rb, 100);
		if (err < 0 && err != -EINTR) {
			p_err("polling events: %s", strerror(-err));
			break;
		}
		err = 0;
		/* --follow: an unload, or an unload and a load, replaced the ring */
		if (follow && now - last_look >= 1000) {
			__u32 cur = events_id(-1);

			last_look = now;
			if (cur != id) {
				ring_buffer__consume(rb);
				ring_buffer__free(rb);
				close(fd);
				rb = NULL;
				fd = -1;
				follow_note(cur ? "a new load replaced the event ring: following the new one" :
					    "pviommu was unloaded: waiting for 'pviommuctl load'");
				waiting = !cur;
			}
		}
	}
	if (rb)
		ring_buffer__free(rb);
	if (fd >= 0)
		close(fd);
	return err < 0 ? 1 : 0;
}

