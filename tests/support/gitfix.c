/* gitfix.c - fixture repositories for envs/ tests (libgit2). Aborts on any
 * setup failure: a test that cannot build its fixture must not pass. */
#include "gitfix.h"

#include <git2.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support.h"

static void check(int e, const char *what)
{
	if (e < 0) {
		const git_error *err = git_error_last();
		fprintf(stderr, "gitfix: %s: %s\n", what, err ? err->message : "?");
		abort();
	}
}

void gf_init(const char *dir)
{
	git_repository *repo;
	git_libgit2_init();
	check(git_repository_init(&repo, dir, 0), "init");
	git_repository_free(repo);
}

void gf_commit(char sha[41], const char *dir, const char *msg, const struct gf_entry *e, size_t n)
{
	git_repository *repo;
	git_index *index;
	git_signature *sig;
	git_oid tree_id, commit_id, parent_id;
	git_tree *tree;
	git_commit *parent = NULL;
	char path[PATH_MAX];

	git_libgit2_init();
	for (size_t i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, e[i].path);
		unlink(path);
		if (e[i].kind == GF_DELETE)
			continue;
		if (e[i].kind == GF_LINK) {
			ts_write_file(path, "", 0); /* creates parents */
			unlink(path);
			if (symlink(e[i].data, path) < 0)
				abort();
			continue;
		}
		if (ts_write_file(path, e[i].data, e[i].len ? e[i].len : strlen(e[i].data)) < 0)
			abort();
		chmod(path, e[i].kind == GF_EXEC ? 0755 : 0644);
	}
	check(git_repository_open(&repo, dir), "open");
	check(git_repository_index(&index, repo), "index");
	for (size_t i = 0; i < n; i++)
		if (e[i].kind == GF_DELETE)
			check(git_index_remove_bypath(index, e[i].path), "remove");
	check(git_index_add_all(index, NULL, GIT_INDEX_ADD_FORCE, NULL, NULL), "add");
	check(git_index_write(index), "write index");
	check(git_index_write_tree(&tree_id, index), "write tree");
	check(git_tree_lookup(&tree, repo, &tree_id), "tree");
	check(git_signature_new(&sig, "Fixture", "fixture@example.com", 1700000000, 0), "sig");
	if (git_reference_name_to_id(&parent_id, repo, "HEAD") == 0)
		check(git_commit_lookup(&parent, repo, &parent_id), "parent");
	check(git_commit_create_v(&commit_id, repo, "HEAD", sig, sig, NULL, msg, tree,
	                          parent ? 1 : 0, parent),
	      "commit");
	git_oid_tostr(sha, 41, &commit_id);
	git_commit_free(parent);
	git_tree_free(tree);
	git_signature_free(sig);
	git_index_free(index);
	git_repository_free(repo);
}

static char a_py_v0[4096];

const char *gf_a_py_v0(void)
{
	if (!a_py_v0[0]) {
		size_t off = 0;
		for (int i = 1; i <= 40; i++)
			off += (size_t)snprintf(a_py_v0 + off, sizeof(a_py_v0) - off,
			                        "def f%d(x):\n    return x + %d\n", i, i);
	}
	return a_py_v0;
}

/* src/a.py with function `which` returning x * mult instead of x + which. */
static char *a_py_edit(const char *base, int which, int mult)
{
	char from[64], to[64];
	char *out = malloc(strlen(base) + 64);
	snprintf(from, sizeof(from), "    return x + %d\n", which);
	snprintf(to, sizeof(to), "    return x * %d\n", mult);
	const char *p = strstr(base, from);
	size_t pre = (size_t)(p - base);
	memcpy(out, base, pre);
	strcpy(out + pre, to);
	strcat(out, p + strlen(from));
	return out;
}

void gf_standard(char c[3][41], const char *dir)
{
	static const char bin[] = {'\x7f', 'E', 'L', 'F', 0, 1, 2, 3, 0, 0, '\xff', '\xfe', 0, 9};
	const char *a0 = gf_a_py_v0();
	char *a1 = a_py_edit(a0, 3, 30), *a2 = a_py_edit(a1, 20, 200);
	struct gf_entry e0[] = {
	        {"README.md", GF_FILE, "# fixture\n", 0},
	        {"src/a.py", GF_FILE, a0, 0},
	        {"src/b.py", GF_FILE, "B = 1\n", 0},
	        {"tests/test_a.py", GF_FILE,
	         "from src.a import f1\n\ndef test_f1():\n    assert f1(1) == 2\n", 0},
	        {"data.bin", GF_FILE, bin, sizeof(bin)},
	        {"link", GF_LINK, "src/a.py", 0},
	        {"crlf.txt", GF_FILE, "one\r\ntwo\r\nthree\r\n", 0},
	        {"nonl.txt", GF_FILE, "alpha\nbeta", 0},
	        {"old_name.txt", GF_FILE, "renamed content\nline 2\nline 3\nline 4\n", 0},
	        {"run.sh", GF_EXEC, "#!/bin/sh\necho run\n", 0},
	};
	struct gf_entry e1[] = {
	        {"src/a.py", GF_FILE, a1, 0},
	        {"old_name.txt", GF_DELETE, NULL, 0},
	        {"new_name.txt", GF_FILE, "renamed content\nline 2\nline 3\nline 4\n", 0},
	        {"src/b.py", GF_DELETE, NULL, 0},
	};
	struct gf_entry e2[] = {
	        {"src/a.py", GF_FILE, a2, 0},
	        {"tests/test_a.py", GF_FILE,
	         "from src.a import f1\n\ndef test_f1():\n    assert f1(1) == 2\n\n"
	         "def test_f3():\n    assert True\n",
	         0},
	};
	git_repository *repo;
	git_object *obj;
	git_oid tag;
	git_signature *sig;

	gf_init(dir);
	gf_commit(c[0], dir, "c0: initial", e0, sizeof(e0) / sizeof(e0[0]));
	gf_commit(c[1], dir, "c1: edit, rename, delete", e1, sizeof(e1) / sizeof(e1[0]));
	gf_commit(c[2], dir, "c2: tests", e2, sizeof(e2) / sizeof(e2[0]));
	check(git_repository_open(&repo, dir), "open");
	check(git_revparse_single(&obj, repo, "HEAD"), "HEAD");
	check(git_signature_new(&sig, "Fixture", "fixture@example.com", 1700000000, 0), "sig");
	check(git_tag_create(&tag, repo, "v1.0", obj, sig, "v1.0", 0), "tag");
	git_signature_free(sig);
	git_object_free(obj);
	git_repository_free(repo);
	free(a1);
	free(a2);
}

/* libgit2 1.5 (Debian 12) leaks pcre2 match data whenever it matches config
 * keys by regular expression (remote creation looks up url.*.insteadOf):
 * 112 bytes per remote, inside libgit2. LeakSanitizer reads this hook; only
 * leaks allocated inside libpcre2 (used by nothing else here) are ignored. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:libpcre2-8.so\n";
}
