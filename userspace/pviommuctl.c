// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * pviommuctl - load, inspect and steer the pviommu DMA policy enforcer.
 *
 *   pviommuctl [-j] [-v] OBJECT [ARGS]    see 'pviommuctl help'
 *
 * This file: the command table, help, the global options. The commands
 * live in files by subject (pviommuctl.h lists them).
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "pviommuctl.h"

/* ---- main ------------------------------------------------------------------------------ */
#ifndef PVIOMMU_VERSION
#define PVIOMMU_VERSION	"unknown"
#endif

static int cmd_help(int argc, char **argv);

static const struct cmd {
	const char *name;
	int (*fn)(int, char **);
	const char *what;
} cmds[] = {
	{ "load", cmd_load, "load/reload programs, pin maps (keeps live mappings)" },
	{ "unload", cmd_unload, "detach everything, remove every pin" },
	{ "status", cmd_status, "programs, kernel features, index, domains, counters" },
	{ "stats", cmd_stats, "counters, every VM's and each VM's [--prometheus]" },
	{ "mappings", cmd_mappings, "live mappings [--pid P] [--bdf B]" },
	{ "events", cmd_events, "follow violations and refused hypercalls" },
	{ "mode", cmd_mode, "audit|deny|kill [--pid P]" },
	{ "run", cmd_run, "run QEMU under the in-process plane: [--mode M] -- QEMU ARGS" },
	{ "attach", cmd_attach, "into a running QEMU --pid P [--enforce]" },
	{ "detach", cmd_detach, "remove it again --pid P" },
	{ "vfio", cmd_vfio, "the VFIO-assigned devices of --pid P, for the LSM gate" },
	{ "help", cmd_help, "this text; 'pviommuctl help CMD' for one command" },
};

#define NR_CMDS	(sizeof(cmds) / sizeof(cmds[0]))

/* the command that name is, or the one it is a prefix of; NULL with the error said */
static const struct cmd *find_cmd(const char *name)
{
	const struct cmd *hit = NULL;
	char which[256] = "";
	size_t off = 0, len = strlen(name);
	int n = 0;

	for (size_t i = 0; i < NR_CMDS; i++) {
		if (!strcmp(name, cmds[i].name))
			return &cmds[i];
		if (strncmp(name, cmds[i].name, len))
			continue;
		hit = &cmds[i];
		n++;
		if (off < sizeof(which))
			off += snprintf(which + off, sizeof(which) - off, "%s%s",
					off ? ", " : "", cmds[i].name);
	}
	if (n == 1)
		return hit;
	if (n)
		p_err("which command is '%s'? %s (see 'pviommuctl help')", name, which);
	else
		p_err("what is '%s'? (see 'pviommuctl help')", name);
	return NULL;
}

static int cmd_help(int argc, char **argv)
{
	const struct cmd *c;

	if (argc > 2) {
		p_err("what is '%s'? help takes one command (see 'pviommuctl help')", argv[2]);
		return 1;
	}
	if (argc == 2) {
		c = find_cmd(argv[1]);
		if (!c)
			return 1;
		if (c->fn != cmd_help) {
			char *av[] = { (char *)c->name, "--help", NULL };

			return c->fn(2, av);
		}
	}
	printf("Usage: pviommuctl [OPTIONS] COMMAND [ARGS]\n\n"
	       "pviommu: guest-authorized DMA ranges per VM and device, enforced on\n"
	       "every transfer of QEMU-emulated and VFIO-assigned devices.\n\n"
	       "Commands (a unique prefix is enough):\n");
	for (size_t i = 0; i < NR_CMDS; i++)
		printf("  %-9s %s\n", cmds[i].name, cmds[i].what);
	printf("\nOptions (before or after the command, not after '--'):\n"
	       "  -j, --json     JSON output (errors too: {\"error\":\"...\"} on stdout)\n"
	       "  -v, --verbose  libbpf's messages, verifier logs included (-vv: debug too)\n"
	       "  -V, --version  version and hypercall ABI\n"
	       "  -h, --help     this text\n\n"
	       "Examples:\n"
	       "  pviommuctl load\n"
	       "  pviommuctl attach --pid $(pidof qemu-system-x86_64)\n"
	       "  pviommuctl mappings --bdf 0000:00:04.0\n"
	       "  pviommuctl status -j\n"
	       "  bpftool map dump pinned %s/%s\n"
	       "\nExit status: 0 ok, 1 error (one 'Error: ...' line says which), 2 this\n"
	       "system cannot run pviommu (not root, no BTF, no bpffs); 'run' ends as QEMU\n"
	       "does (127: QEMU cannot be executed).\n", PIN_DIR,
	       PVIOMMU_MAP_DOMAINS);
	return 0;
}

static int print_version(void)
{
	if (json) {
		struct jw w;

		jw_begin(&w, stdout);
		jw_str(&w, "version", PVIOMMU_VERSION);
		jw_u64(&w, "abi", PVIOMMU_ABI_VERSION);
		jw_str(&w, "libbpf", libbpf_version_string());
		jw_end(&w);
		return 0;
	}
		printf("pviommuctl v%s\nABI %u (hypercalls, shared page: bpf/pviommu.h)\nusing libbpf %s\n",
		       PVIOMMU_VERSION, PVIOMMU_ABI_VERSION, libbpf_version_string());
	return 0;
}

/* -j, --json, -v, --verbose (and -jv, -vv...): 1 if a is one of them */
static int global_opt(const char *a)
{
	if (!strcmp(a, "--json") || !strcmp(a, "--verbose")) {
		json |= a[2] == 'j';
		verbose += a[2] == 'v';
		return 1;
	}
	if (a[0] != '-' || !a[1] || strspn(a + 1, "jv") != strlen(a + 1))
		return 0;
	for (a++; *a; a++) {
		json |= *a == 'j';
		verbose += *a == 'v';
	}
	return 1;
}

/* an option of 'run' whose value is the next word: -m -q -l, --mode --quota --lib */
static int run_opt_value(const char *a)
{
	static const char *const lo[] = { "--mode", "--quota", "--lib" };
	size_t len = strlen(a);

	if (!strcmp(a, "-m") || !strcmp(a, "-q") || !strcmp(a, "-l"))
		return 1;
	if (len < 3 || strncmp(a, "--", 2) || strchr(a, '='))
		return 0;
	for (size_t i = 0; i < sizeof(lo) / sizeof(lo[0]); i++)
		if (!strncmp(a, lo[i], len))
			return 1;
	return 0;
}

int main(int argc, char **argv)
{
	const struct cmd *cmd;
	int i, k, n, help = 0, version = 0, value = 0;

	opterr = 0;	/* getopt's complaints go through opt_err() */
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (global_opt(argv[i]))
			continue;
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			help = 1;
		} else if (!strcmp(argv[i], "-V") || !strcmp(argv[i], "--version")) {
			version = 1;
		} else {
			p_err("what is '%s'? (see 'pviommuctl help')", argv[i]);
			return 1;
		}
	}
	if (version)
		return print_version();
	if (help)
		return cmd_help(1, argv);
	if (i >= argc) {
		cmd_help(1, argv);
		p_err("which command? (see above)");
		return 1;
	}
	cmd = find_cmd(argv[i]);
	if (!cmd)
		return 1;
	/*
	 * The global options after the command too, as bpftool takes them;
	 * never past '--', nor into QEMU's own arguments ('run' ends its
	 * options at the first word that is not one of them or their value).
	 */
	for (k = n = i + 1; k < argc; k++) {
		const char *a = argv[k];

		if (!strcmp(a, "--") || (cmd->fn == cmd_run && !value && a[0] != '-')) {
			while (k < argc)
				argv[n++] = argv[k++];
			break;
		}
		if (!value && global_opt(a))
			continue;
		value = !value && cmd->fn == cmd_run && run_opt_value(a);
		argv[n++] = argv[k];
	}
	argv[n] = NULL;
	argc = n;
	libbpf_set_print(libbpf_print);
	return cmd->fn(argc - i, argv + i);
}

