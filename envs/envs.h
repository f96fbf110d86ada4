/* envs.h - the public API of envs/: one #include line per module header.
 * (Engineers sharing envs/ add their module's line here; keep it sorted by
 * the order in which the pipeline uses them.) */
#ifndef SWERVE_ENVS_H
#define SWERVE_ENVS_H

#include "envs/task.h"
#include "envs/repo.h"
#include "envs/fstree.h"
#include "envs/patch.h"
#include "envs/layer.h"
#include "envs/workspace.h"
#include "envs/report.h"
#include "envs/validate.h"

#endif
