/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* testlib - named assertions, subtests, skips; closes with "N passed, M failed" */
#ifndef __PV_TESTLIB_H
#define __PV_TESTLIB_H
#include <stdio.h>
#include <string.h>

static int tl_pass, tl_fail, tl_skip, tl_sub_fail;
static const char *tl_sub = "";

#define ASSERT_EQ(got, want, what) ({					\
	long long __g = (long long)(got), __w = (long long)(want);	\
	int __ok = __g == __w;						\
	if (!__ok) {							\
		printf("  FAIL %s: %s: got %lld (0x%llx), want %lld (0x%llx) [%s:%d]\n", \
		       tl_sub, what, __g, (unsigned long long)__g, __w,	\
		       (unsigned long long)__w, __FILE__, __LINE__);	\
		tl_sub_fail++;						\
	}								\
	__ok; })
#define ASSERT_NEQ(got, bad, what) ({					\
	long long __g = (long long)(got), __b = (long long)(bad);	\
	int __ok = __g != __b;						\
	if (!__ok) {							\
		printf("  FAIL %s: %s: got %lld [%s:%d]\n", tl_sub, what,	\
		       __g, __FILE__, __LINE__);			\
		tl_sub_fail++;						\
	}								\
	__ok; })
#define ASSERT_OK(got, what) ASSERT_EQ(got, 0, what)
#define ASSERT_TRUE(c, what) ASSERT_EQ(!!(c), 1, what)

/* run one subtest: a function returning nothing, asserting inside */
#define SUBTEST(name, call) do {					\
	tl_sub = name;							\
	tl_sub_fail = 0;						\
	call;								\
	if (tl_sub_fail) {						\
		tl_fail++;						\
		printf("not ok %s\n", name);				\
	} else {							\
		tl_pass++;						\
		printf("ok %s\n", name);				\
	}								\
} while (0)

#define SKIP(name, why) do {						\
	tl_skip++;							\
	printf("skip %s: %s\n", name, why);				\
} while (0)

/*
 * A reader thread's verdicts against a writer: right (want or want2),
 * busy (the reader failed closed: busy_v), or wrong
 */
struct tl_verdicts {
	long	ok, busy, wrong;
};

static inline void tl_verdict(struct tl_verdicts *t, int v, int want, int want2,
			      int busy_v)
{
	if (v == want || v == want2)
		t->ok++;
	else if (v == busy_v)
		t->busy++;
	else
		t->wrong++;
}

static inline int tl_done(const char *suite)
{
	printf("%s: %d passed, %d failed, %d skipped\n", suite, tl_pass,
	       tl_fail, tl_skip);
	return tl_fail ? 1 : 0;
}
#endif
