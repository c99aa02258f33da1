// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* pins.c - pins under the bpffs directory: a reload's staged hand-over, links by target */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include "pviommuctl.h"

/*
 * A reload stages its pins (NAME_new, next to the old ones) and commits
 * them only after the new programs became active: until then the old
 * links stay attached and act, so no hypercall, exit or transfer falls
 * into a window where only idle programs are attached.
 */
static struct {
	int	on;
	int	n, cap;
	char	**path;		/* the final names; NAME_new holds the new object */
} staged;

static void new_name(char *buf, size_t len, const char *path)
{
	snprintf(buf, len, "%.*s_new", (int)(len - 5), path);
}

void pins_stage(void)
{
	staged.on = 1;
}

int pins_commit(void)
{
	char tmp[PATH_MAX];
	int err = 0;

	for (int i = 0; i < staged.n; i++) {
		new_name(tmp, sizeof(tmp), staged.path[i]);
		/* rename over the old pin: the old link goes with its last ref */
		if (rename(tmp, staged.path[i]) && !err)
			err = -errno;
		free(staged.path[i]);
	}
	staged.n = 0;
	staged.on = 0;
	return err;
}

void pins_drop(void)
{
	char tmp[PATH_MAX];

	for (int i = 0; i < staged.n; i++) {
		new_name(tmp, sizeof(tmp), staged.path[i]);
		unlink(tmp);
		free(staged.path[i]);
	}
	staged.n = 0;
	staged.on = 0;
}

static int stage(const char *path)
{
	if (staged.n == staged.cap) {
		int cap = staged.cap ? 2 * staged.cap : 64;
		char **p = realloc(staged.path, cap * sizeof(*p));

		if (!p)
			return -ENOMEM;
		staged.path = p;
		staged.cap = cap;
	}
	if (!(staged.path[staged.n] = strdup(path)))
		return -ENOMEM;
	staged.n++;
	return 0;
}

int pin_replace(int fd, const char *dir, const char *name)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	int err;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path) - 4)
		return -ENAMETOOLONG;
	new_name(tmp, sizeof(tmp), path);
	unlink(tmp);
	if (bpf_obj_pin(fd, tmp))
		return -errno;
	if (staged.on) {
		err = stage(path);
		if (err)
			unlink(tmp);
		return err;
	}
	/* rename over the old pin: the old link goes when its last ref does */
	if (rename(tmp, path)) {
		err = -errno;
		unlink(tmp);
		return err;
	}
	return 0;
}

/* links/tcg-<tag>, links/enf-<tag>-<n>: the targets with links of a kind, each once */
int link_tags(const char *prefix, struct tag_list *l)
{
	DIR *d = opendir(LINK_DIR);
	struct dirent *de;
	char tag[PV_TAG_LEN], *dash;
	int j, cap = 0;

	l->n = 0;
	l->tag = NULL;
	while (d && (de = readdir(d))) {
		if (strncmp(de->d_name, prefix, strlen(prefix)) ||
		    strstr(de->d_name, "_new"))
			continue;
		snprintf(tag, sizeof(tag), "%s", de->d_name + strlen(prefix));
		if (!strcmp(prefix, "enf-") && (dash = strrchr(tag, '-')))
			*dash = 0;
		for (j = 0; j < l->n && strcmp(l->tag[j], tag); j++)
			;
		if (j < l->n)
			continue;
		if (l->n == cap) {
			void *p = realloc(l->tag, (cap = cap ? 2 * cap : 16) * sizeof(*l->tag));

			if (!p) {
				closedir(d);
				return -ENOMEM;	/* never a silently short list */
			}
			l->tag = p;
		}
		snprintf(l->tag[l->n++], PV_TAG_LEN, "%s", tag);
	}
	if (d)
		closedir(d);
	return l->n;
}

void tags_free(struct tag_list *l)
{
	free(l->tag);
	l->tag = NULL;
	l->n = 0;
}

int drop_links_of(const char *tag)
{
	DIR *d = opendir(LINK_DIR);
	struct dirent *de;
	char a[PV_LINK_NAME_LEN], b[PV_LINK_NAME_LEN];
	int n = 0;

	snprintf(a, sizeof(a), "tcg-%s", tag);
	snprintf(b, sizeof(b), "enf-%s-", tag);
	while (d && (de = readdir(d)))
		if (!strcmp(de->d_name, a) ||
		    (!strncmp(de->d_name, b, strlen(b)) &&
		     !strchr(de->d_name + strlen(b), '-')))
			n += !unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	return n;
}

int rm_dir_pins(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[512];
	int n = 0;

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		if (!unlink(path))
			n++;
	}
	closedir(d);
	rmdir(dir);
	return n;
}

/* how many links have a name that starts with prefix */
int count_links(const char *prefix)
{
	DIR *d = opendir(LINK_DIR);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)))
		n += !strncmp(de->d_name, prefix, strlen(prefix)) && !strstr(de->d_name, "_new");
	if (d)
		closedir(d);
	return n;
}
