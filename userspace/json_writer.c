// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* json_writer.c - see json_writer.h */
#include "json_writer.h"

void jw_init(struct jw *w, FILE *o)
{
	w->o = o;
	w->depth = 0;
	w->more[0] = 0;
}

void jw_escape(FILE *o, const char *s)
{
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(o, "\\%c", c);
		else if (c == '\n')
			fputs("\\n", o);
		else if (c == '\t')
			fputs("\\t", o);
		else if (c < 0x20)
			fprintf(o, "\\u%04x", c);
		else
			fputc(c, o);
	}
}

void jw_key(struct jw *w, const char *key)
{
	if (w->more[w->depth])
		fputc(',', w->o);
	w->more[w->depth] = 1;
	if (key) {
		fputc('"', w->o);
		jw_escape(w->o, key);
		fputs("\":", w->o);
	}
}

static void open_level(struct jw *w, const char *key, char open, char close)
{
	jw_key(w, key);
	fputc(open, w->o);
	if (w->depth < JW_MAX_DEPTH) {
		w->close[w->depth++] = close;
		w->more[w->depth] = 0;
	}
}

void jw_obj(struct jw *w, const char *key)
{
	open_level(w, key, '{', '}');
}

void jw_arr(struct jw *w, const char *key)
{
	open_level(w, key, '[', ']');
}

void jw_end(struct jw *w)
{
	if (!w->depth)
		return;
	fputc(w->close[--w->depth], w->o);
	if (!w->depth) {
		fputc('\n', w->o);
		w->more[0] = 0;	/* the next document starts a line of its own */
	}
}

void jw_str(struct jw *w, const char *key, const char *s)
{
	jw_key(w, key);
	fputc('"', w->o);
	jw_escape(w->o, s ? s : "");
	fputc('"', w->o);
}

void jw_u64(struct jw *w, const char *key, unsigned long long v)
{
	jw_key(w, key);
	fprintf(w->o, "%llu", v);
}

void jw_int(struct jw *w, const char *key, long long v)
{
	jw_key(w, key);
	fprintf(w->o, "%lld", v);
}

void jw_bool(struct jw *w, const char *key, int v)
{
	jw_key(w, key);
	fputs(v ? "true" : "false", w->o);
}

void jw_begin(struct jw *w, FILE *o)
{
	jw_init(w, o);
	jw_obj(w, NULL);
}
