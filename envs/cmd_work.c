/* cmd_work.c - `swerve work`: long-running workers serving the db queue for
 * an RL loop (rollouts from `swerve submit` or a trainer writing the db). */
#include "cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/db.h"
#include "envs/pool.h"
#include "envs/task.h"
#include "sandbox/error.h"

static const char usage_text[] =
        "usage: swerve work --db FILE [--workers N] [--run NAME] [--until-empty]\n"
        "\n"
        "Serves the rollout queue: each worker claims a rollout (with a lease), runs the\n"
        "episode in the sandbox and stores verdict, test statuses and reward in one\n"
        "transaction. Infrastructure failures are retried with backoff and end as\n"
        "infra_error (never a reward). Runs until SIGINT/SIGTERM: workers then stop\n"
        "claiming, finish the episode in hand and exit (a second signal kills them;\n"
        "their leases expire and the rollouts return to the queue).\n"
        "\n"
        "options:\n"
        "  --db FILE          the database (swerve submit / swerve db init)\n"
        "  --workers N        worker processes (default: number of CPUs)\n"
        "  --run NAME         serve only this run (default: every run)\n"
        "  --until-empty      exit once the queue is empty instead of waiting for more\n"
        "  --lease S          lease per rollout in seconds (default 2 x timeout + 120)\n"
        "  --timeout S        test timeout when a task gives none (default 1800)\n"
        "  --reward KEY=VALUE reward value (repeatable; see swerve eval --help)\n"
        "  --reward-spec FILE reward values as JSON\n"
        "  --home DIR         repository cache (default $SWERVE_HOME or ~/.cache/swerve)\n"
        "  --quiet            no per-rollout error lines\n"
        "\n"
        "exit: 0 stopped cleanly; 1 interrupted with work left; 2 usage; 3 could not start\n";

int swerve_cmd_work(int argc, char **argv)
{
	static const struct option longopts[] = {
	        {"db", required_argument, 0, 'd'},     {"workers", required_argument, 0, 'w'},
	        {"run", required_argument, 0, 'r'},    {"until-empty", no_argument, 0, 'u'},
	        {"lease", required_argument, 0, 'l'},  {"timeout", required_argument, 0, 'T'},
	        {"reward", required_argument, 0, 'k'}, {"reward-spec", required_argument, 0, 's'},
	        {"home", required_argument, 0, 'H'},   {"quiet", no_argument, 0, 'q'},
	        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
	struct swerve_pool_opts po;
	struct swerve_pool_stats ps;
	const char *run_name = NULL;
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int c;

	memset(&po, 0, sizeof(po));
	swerve_reward_spec_default(&po.reward);
	po.workers = ncpu > 0 ? (int)ncpu : 1;
	po.serve = 1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		double secs;
		switch (c) {
		case 'd': po.db_path = optarg; break;
		case 'r': run_name = optarg; break;
		case 'u': po.serve = 0; break;
		case 'H': po.home = optarg; break;
		case 'q': po.quiet = 1; break;
		case 'w':
			if (swerve_cli_int(&po.workers, "work", "--workers", optarg, 1, 1024))
				return SWERVE_EXIT_USAGE;
			break;
		case 'l':
			if (swerve_cli_seconds(&secs, "work", "--lease", optarg))
				return SWERVE_EXIT_USAGE;
			if (secs > 2e6)
				return swerve_cli_fail("work", SWERVE_EXIT_USAGE,
				                       "--lease: at most 2000000 seconds");
			po.lease_ms = (int)(secs * 1000);
			break;
		case 'T':
			if (swerve_cli_seconds(&secs, "work", "--timeout", optarg))
				return SWERVE_EXIT_USAGE;
			po.default_timeout_ms = (uint64_t)(secs * 1000);
			break;
		case 'k':
			if (swerve_reward_spec_set_arg(&po.reward, optarg) < 0)
				return swerve_cli_fail("work", SWERVE_EXIT_USAGE, "--reward %s",
				                       swerve_error_last());
			break;
		case 's':
			if (swerve_reward_spec_load(&po.reward, optarg) < 0)
				return swerve_cli_fail("work", SWERVE_EXIT_USAGE, "%s",
				                       swerve_error_last());
			break;
		case 'h': fputs(usage_text, stdout); return SWERVE_EXIT_OK;
		default:
			return swerve_cli_fail("work", SWERVE_EXIT_USAGE,
			                       "bad option (see --help)");
		}
	}
	if (optind < argc)
		return swerve_cli_fail("work", SWERVE_EXIT_USAGE, "unexpected argument '%s'",
		                       argv[optind]);
	if (!po.db_path)
		return swerve_cli_fail("work", SWERVE_EXIT_USAGE, "--db is required (see --help)");

	if (run_name) {
		struct swerve_db *db = NULL;
		struct swerve_db_opts dbo = SWERVE_DB_OPTS_INIT;
		dbo.create = 0;
		int rc = swerve_db_open(&db, po.db_path, &dbo);
		if (rc == 0)
			rc = swerve_db_run_find(&po.run, db, run_name);
		swerve_db_close(db);
		if (rc < 0)
			return swerve_cli_fail("work",
			                       rc == SWERVE_ENOTFOUND ? SWERVE_EXIT_USAGE
			                                              : SWERVE_EXIT_INFRA,
			                       "%s", swerve_error_last());
	}
	po.progress_tty = isatty(2) && !po.serve;
	if (po.serve)
		fprintf(stderr, "swerve work: %d workers serving %s (SIGINT/SIGTERM to stop)\n",
		        po.workers, po.db_path);
	if (swerve_pool_run(&ps, &po) < 0)
		return swerve_cli_fail("work", SWERVE_EXIT_INFRA, "%s", swerve_error_last());
	fprintf(stderr,
	        "swerve work: %lld episodes stored, %lld infrastructure failures, %lld "
	        "worker crashes, %.1f s\n",
	        (long long)ps.episodes, (long long)ps.infra_fails, (long long)ps.crashes,
	        ps.wall_s);
	return ps.interrupted ? SWERVE_EXIT_SOME_FAILED : SWERVE_EXIT_OK;
}
