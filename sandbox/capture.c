/* capture.c - keeps the head and the tail of an output stream within a byte
 * budget, counting every byte. Half the budget holds the first bytes, half a
 * ring of the last bytes; the joined result marks what was left out. */
#include "sandbox/internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sb_capture_init(struct sb_capture *c, uint64_t keep)
{
	memset(c, 0, sizeof(*c));
	if (keep < 2)
		keep = 2;
	c->head_cap = (size_t)(keep / 2);
	c->tail_cap = (size_t)(keep - keep / 2);
	/* grown lazily: most runs print little */
	return 0;
}

void sb_capture_add(struct sb_capture *c, const char *d, size_t n)
{
	c->total += n;
	if (c->head_len < c->head_cap) {
		size_t k = c->head_cap - c->head_len;
		if (k > n)
			k = n;
		/* full-size buffers: malloc maps them lazily, untouched pages cost nothing */
		if (!c->head && !(c->head = malloc(c->head_cap)))
			return;
		memcpy(c->head + c->head_len, d, k);
		c->head_len += k;
		d += k;
		n -= k;
	}
	if (!n)
		return;
	if (!c->tail && !(c->tail = malloc(c->tail_cap)))
		return;
	if (n >= c->tail_cap) {
		memcpy(c->tail, d + n - c->tail_cap, c->tail_cap);
		c->tail_pos = 0;
		c->tail_len = c->tail_cap;
		return;
	}
	for (size_t i = 0; i < n;) {
		size_t k = c->tail_cap - c->tail_pos;
		if (k > n - i)
			k = n - i;
		memcpy(c->tail + c->tail_pos, d + i, k);
		c->tail_pos = (c->tail_pos + k) % c->tail_cap;
		i += k;
	}
	c->tail_len = c->tail_len + n > c->tail_cap ? c->tail_cap : c->tail_len + n;
}

int sb_capture_finish(struct sb_capture *c, struct swerve_sandbox_output *out)
{
	uint64_t omitted = c->total - c->head_len - c->tail_len;
	char marker[80] = "";
	if (omitted)
		snprintf(marker, sizeof(marker), "\n[... swerve: %" PRIu64 " bytes omitted ...]\n",
		         omitted);
	size_t ml = strlen(marker);
	size_t len = c->head_len + ml + c->tail_len;
	char *p = malloc(len + 1);
	if (!p)
		return -1;
	if (c->head_len)
		memcpy(p, c->head, c->head_len);
	memcpy(p + c->head_len, marker, ml);
	/* the ring starts at tail_pos once it is full */
	size_t start = c->tail_len == c->tail_cap ? c->tail_pos : 0;
	for (size_t i = 0; i < c->tail_len; i++)
		p[c->head_len + ml + i] = c->tail[(start + i) % c->tail_cap];
	p[len] = '\0';
	out->data = p;
	out->len = len;
	out->total = c->total;
	out->truncated = omitted != 0;
	return 0;
}

void sb_capture_dispose(struct sb_capture *c)
{
	free(c->head);
	free(c->tail);
	memset(c, 0, sizeof(*c));
}
