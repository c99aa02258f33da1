/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* pviommuctl.h - what the files of pviommuctl share */
#ifndef __PVIOMMUCTL_H
#define __PVIOMMUCTL_H

extern int json;		/* -j, --json */

/* one "Error: ..." line on stderr, or {"error":"..."} on stdout with -j */
void p_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "note: ..." on stderr; nothing with -j */
void p_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* getopt_long's '?' or ':' (optstring starting with ':', opterr = 0) as one error; returns 1 */
int opt_err(int c, char **argv, const char *cmd);

int cmd_run(int argc, char **argv);	/* run.c: the in-process plane */

#endif
