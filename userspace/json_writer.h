/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * json_writer.h - the one JSON writer of pviommuctl: separators, nesting and
 * string escaping live here, so no command prints JSON by hand.
 *
 *   struct jw w;
 *   jw_init(&w, stdout);
 *   jw_obj(&w, NULL);  jw_str(&w, "name", s);  jw_arr(&w, "pids"); ...
 *   jw_end(&w);  jw_end(&w);        ends the line at the top level
 *
 * key is the member name inside an object, NULL inside an array or at the top.
 */
#ifndef __JSON_WRITER_H
#define __JSON_WRITER_H

#include <stdio.h>

#define JW_MAX_DEPTH	16

struct jw {
	FILE		*o;
	int		depth;
	char		close[JW_MAX_DEPTH];	/* '}' or ']' per open level */
	unsigned char	more[JW_MAX_DEPTH + 1];	/* a value was written at this level */
};

void jw_init(struct jw *w, FILE *o);
/* jw_init, then the top-level object opened: one document, ended by its jw_end */
void jw_begin(struct jw *w, FILE *o);
void jw_obj(struct jw *w, const char *key);
void jw_arr(struct jw *w, const char *key);
void jw_end(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *s);
void jw_u64(struct jw *w, const char *key, unsigned long long v);
void jw_int(struct jw *w, const char *key, long long v);
void jw_bool(struct jw *w, const char *key, int v);
/* the separator and "key": for the one value the caller writes next itself */
void jw_key(struct jw *w, const char *key);
/* s as the inside of a JSON string: " \ escaped, controls as \n \t or \u00XX */
void jw_escape(FILE *o, const char *s);

#endif
