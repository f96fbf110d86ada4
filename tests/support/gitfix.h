/* gitfix.h - fixture git repositories for envs/ tests, built with libgit2. */
#ifndef SWERVE_TEST_GITFIX_H
#define SWERVE_TEST_GITFIX_H

#include <stddef.h>

enum gf_kind { GF_FILE, GF_EXEC, GF_LINK, GF_DELETE };

struct gf_entry {
	const char *path;
	enum gf_kind kind;
	const char *data; /* file content or link target */
	size_t len;       /* 0: strlen(data) */
};

/* Creates an empty non-bare repository at dir (aborts on failure). */
void gf_init(const char *dir);

/* Applies the entries to dir's work tree, stages everything and commits;
 * writes the new commit id (40 hex + NUL) to sha. Aborts on failure. */
void gf_commit(char sha[41], const char *dir, const char *msg, const struct gf_entry *e, size_t n);

/* The standard fixture used by the envs tests, in a new repository at dir:
 *   c[0]: README.md, src/a.py (40 lines), src/b.py, tests/test_a.py,
 *         data.bin (binary), link -> src/a.py, crlf.txt (CRLF), nonl.txt
 *         (no final newline), old_name.txt, run.sh (executable)
 *   c[1]: edits src/a.py, renames old_name.txt -> new_name.txt, deletes src/b.py
 *   c[2]: edits tests/test_a.py and src/a.py; tags v1.0 */
void gf_standard(char c[3][41], const char *dir);

/* The content of src/a.py at c[0] (static). */
const char *gf_a_py_v0(void);

#endif
