/* reward.c - outcomes and the reward spec (the formula is in rewards.h).
 * Does: map a trusted grade to resolved / regression / unresolved; hold the
 * reward of every outcome as data, settable from text (flags, a spec file's
 * fields); compute the reward. Does not: read files (envs/ loads spec files
 * with jansson and calls swerve_reward_spec_set per field). */
#include "rewards.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const outcome_names[SWERVE_OUTCOME_COUNT] = {
        "resolved", "unresolved",        "regression",  "patch_failed",
        "timeout",  "sandbox_violation", "empty_patch",
};

const char *swerve_outcome_name(enum swerve_outcome o)
{
	return (unsigned)o < SWERVE_OUTCOME_COUNT ? outcome_names[o] : "?";
}

int swerve_outcome_parse(enum swerve_outcome *out, const char *name)
{
	for (int i = 0; i < SWERVE_OUTCOME_COUNT; i++)
		if (name && strcmp(name, outcome_names[i]) == 0) {
			*out = (enum swerve_outcome)i;
			return 0;
		}
	return swerve_error_set(SWERVE_EINVAL,
	                        "outcome '%s': not one of resolved, unresolved, regression, "
	                        "patch_failed, timeout, sandbox_violation, empty_patch",
	                        name ? name : "(null)");
}

int swerve_outcome_from_grade(enum swerve_outcome *out, const struct swerve_grade *grade)
{
	if (!grade->trusted)
		return swerve_error_set(SWERVE_EINVAL, "untrusted test run: %s",
		                        grade->untrusted_reason);
	if (grade->resolution == SWERVE_RESOLVED_FULL)
		*out = SWERVE_OUTCOME_RESOLVED;
	else if (grade->n_failure[SWERVE_PASS_TO_PASS] > 0)
		*out = SWERVE_OUTCOME_REGRESSION;
	else
		*out = SWERVE_OUTCOME_UNRESOLVED;
	return 0;
}

void swerve_reward_spec_default(struct swerve_reward_spec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->value[SWERVE_OUTCOME_RESOLVED] = 1.0;
}

int swerve_reward_spec_set(struct swerve_reward_spec *spec, const char *key, const char *value)
{
	if (!key || !value)
		return swerve_error_set(SWERVE_EINVAL, "reward spec: missing key or value");
	if (strcmp(key, "partial_credit") == 0) {
		if (strcasecmp(value, "true") == 0 || strcmp(value, "1") == 0)
			spec->partial_credit = 1;
		else if (strcasecmp(value, "false") == 0 || strcmp(value, "0") == 0)
			spec->partial_credit = 0;
		else
			return swerve_error_set(
			        SWERVE_EINVAL,
			        "reward spec: partial_credit '%s': expected true or "
			        "false",
			        value);
		return 0;
	}
	enum swerve_outcome o;
	if (swerve_outcome_parse(&o, key) != 0)
		return swerve_error_set(
		        SWERVE_EINVAL,
		        "reward spec: unknown key '%s' (keys: resolved, unresolved, "
		        "regression, patch_failed, timeout, sandbox_violation, "
		        "empty_patch, partial_credit)",
		        key);
	char *end;
	errno = 0;
	double v = strtod(value, &end);
	if (end == value || *end != '\0' || errno == ERANGE || !isfinite(v))
		return swerve_error_set(SWERVE_EINVAL, "reward spec: %s '%s': not a finite number",
		                        key, value);
	spec->value[o] = v;
	return 0;
}

int swerve_reward_spec_set_arg(struct swerve_reward_spec *spec, const char *arg)
{
	const char *eqs = arg ? strchr(arg, '=') : NULL;
	if (!eqs || eqs == arg)
		return swerve_error_set(SWERVE_EINVAL, "reward spec: '%s': expected key=value",
		                        arg ? arg : "(null)");
	char key[64];
	size_t kl = (size_t)(eqs - arg);
	if (kl >= sizeof(key))
		return swerve_error_set(SWERVE_EINVAL, "reward spec: key of '%s' too long", arg);
	memcpy(key, arg, kl);
	key[kl] = '\0';
	return swerve_reward_spec_set(spec, key, eqs + 1);
}

double swerve_reward(const struct swerve_reward_spec *spec, enum swerve_outcome outcome,
                     double f2p_fraction)
{
	if ((unsigned)outcome >= SWERVE_OUTCOME_COUNT)
		return 0.0;
	double r = spec->value[outcome];
	if (outcome == SWERVE_OUTCOME_UNRESOLVED && spec->partial_credit) {
		double f = f2p_fraction;
		if (!(f >= 0.0)) /* also NaN */
			f = 0.0;
		if (f > 1.0)
			f = 1.0;
		double u = spec->value[SWERVE_OUTCOME_UNRESOLVED];
		r = u + (spec->value[SWERVE_OUTCOME_RESOLVED] - u) * f;
	}
	return r;
}
