/* fuzz_tasks.c - libFuzzer target for the task and prediction loaders
 * (envs/task.c): any bytes either load (with problems listed) or fail with a
 * message; loaded tasks always have the fields task.h promises. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envs/task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct swerve_task_set *tasks = NULL;
	struct swerve_prediction_set *preds = NULL;
	if (swerve_tasks_load_buffer(&tasks, "fuzz", (const char *)data, size) == 0) {
		for (size_t i = 0; i < tasks->n; i++) {
			const struct swerve_task *t = &tasks->tasks[i];
			if (!t->instance_id[0] || !t->test_cmd || !t->log_parser || !t->json)
				abort();
			if (swerve_task_set_find(tasks, t->instance_id) != t)
				abort(); /* duplicates must have been dropped */
		}
	} else if (!swerve_error_last()[0]) {
		abort();
	}
	if (swerve_predictions_load_buffer(&preds, "fuzz", (const char *)data, size) == 0) {
		for (size_t i = 0; i < preds->n; i++)
			if (preds->preds[i].model_patch && !preds->preds[i].model_patch[0])
				abort(); /* empty patches are NULL */
		if (tasks)
			swerve_predictions_check(preds, tasks);
	}
	swerve_prediction_set_free(preds);
	swerve_task_set_free(tasks);
	return 0;
}
