/* test_sha256.c - swerve_sha256_hex against FIPS 180-4 vectors and sha256sum. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db/db.h"
#include "tests/support/support.h"

static void check(const char *msg, size_t len, const char *want)
{
	char got[65];
	swerve_sha256_hex(got, msg, len);
	cr_assert_str_eq(got, want, "len %zu", len);
}

Test(sha256, fips_vectors)
{
	check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	check("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", 56,
	      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	char *a = malloc(1000000);
	memset(a, 'a', 1000000);
	check(a, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(a);
}

/* Every padding boundary (55, 56, 63, 64, 119, 120 ... bytes) against the
 * coreutils tool. */
Test(sha256, matches_sha256sum_for_every_length_up_to_200)
{
	char *dir = ts_mkdtemp(), path[512], buf[200], got[65];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 31 + 7);
	snprintf(path, sizeof(path), "%s/in", dir);
	for (size_t len = 0; len <= sizeof(buf); len++) {
		char *out = NULL;
		cr_assert_eq(ts_write_file(path, buf, len), 0);
		cr_assert_eq(ts_sh(&out, NULL, "sha256sum '%s'", path), 0);
		swerve_sha256_hex(got, buf, len);
		cr_assert(strncmp(out, got, 64) == 0, "len %zu: %.64s vs %s", len, out, got);
		free(out);
	}
	ts_rmtree(dir);
	free(dir);
}
