"""`seqnet sim`: run the real consensus core in the deterministic simulator."""

from __future__ import annotations

import json
import os
import sys
import time

import click

from consensus.sim.byzantine import BEHAVIOURS
from consensus.sim.epochs import EpochSeedResult, EpochSimParams, run_epoch_seeds
from consensus.sim.runner import run_many
from consensus.sim.simulator import SeedResult, SimParams
from sequencer_net.cli.attack import ATTACK_CHOICES, run_attacks
from sequencer_net.fairness.attacks.runner import ATTACKS, COMMITTEE_SIZES, DEFAULT_SEEDS


def _replay_command(params: SimParams, seed: int) -> str:
    extra = "".join(f" --behaviour {b}" for b in params.behaviours)
    if params.bad_period_ms:
        extra += (
            f" --bad-period-s {params.bad_period_ms / 1000:g} --bad-delay-ms {params.bad_delay_ms}"
            f" --bad-loss {params.bad_loss:g}"
        )
    if not params.crashes:
        extra += " --no-crashes"
    return (
        f"seqnet sim --validators {params.validators} --byzantine {params.byzantine} "
        f"--seed {seed} --timeout-ms {params.view_timeout_ms} "
        f"--chaos-ms {params.chaos_ms} --calm-ms {params.calm_ms}{extra}"
    )


@click.command()
@click.option(
    "--validators",
    "-n",
    default=4,
    show_default=True,
    help="Validators (n). With --attack and no -n: both 4 and 7.",
)
@click.option(
    "--byzantine",
    "-f",
    default=1,
    show_default=True,
    help="Byzantine validators. Safety and liveness are promised for f <= (n-1)/3.",
)
@click.option(
    "--seeds",
    default=100,
    show_default=True,
    help=f"How many seeds to run (with --attack and no --seeds: {DEFAULT_SEEDS}).",
)
@click.option("--first-seed", default=0, show_default=True, help="Run seeds first..first+K-1.")
@click.option("--seed", type=int, default=None, help="Run (replay) exactly this one seed.")
@click.option(
    "--jobs",
    "-j",
    default=0,
    help="Worker processes (default: one per core).",
)
@click.option(
    "--behaviour",
    "behaviours",
    multiple=True,
    type=click.Choice(sorted(BEHAVIOURS)),
    help="Restrict Byzantine validators to these behaviours (repeatable). "
    "Default: drawn per seed from all.",
)
@click.option("--timeout-ms", default=400, show_default=True, help="View timeout (virtual ms).")
@click.option(
    "--chaos-ms", default=3000, show_default=True, help="Faulty phase length (virtual ms)."
)
@click.option(
    "--calm-ms", default=4000, show_default=True, help="Healed phase length (virtual ms)."
)
@click.option(
    "--bad-period-s",
    type=float,
    default=0.0,
    help="Instead of random chaos, delay every message by --bad-delay-ms for this many "
    "simulated seconds (optionally losing --bad-loss of them), then heal.",
)
@click.option(
    "--bad-delay-ms", default=250, show_default=True, help="Message delay in the bad period."
)
@click.option(
    "--bad-loss",
    type=click.FloatRange(0.0, 0.99),
    default=0.0,
    show_default=True,
    help="Probability a message is lost in the bad period.",
)
@click.option("--no-crashes", is_flag=True, help="Do not crash and restart honest validators.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option(
    "--epochs",
    is_flag=True,
    help="Instead, run a rotating validator set: 4 epochs of 4, 5, 4 and 5 validators (one "
    "joins, one leaves, weights change), one Byzantine member per epoch unless -f 0, a lossy "
    "--chaos-ms then calm; report per epoch when it ended (docs/consensus.md, "
    '"Validator-set epochs").',
)
@click.option(
    "--epoch-length",
    default=10,
    show_default=True,
    help="With --epochs: heights per epoch (all but the last).",
)
@click.option(
    "--attack",
    type=click.Choice(ATTACK_CHOICES),
    default=None,
    help="Instead of the consensus simulation, run a fair-ordering attack (or all) "
    "against the payload layer's real checks, f = (n-1)/3 Byzantine (docs/fairness.md, "
    '"Attacks"). Exit status 1 if any attack succeeds.',
)
@click.pass_context
def sim(
    ctx: click.Context,
    validators: int,
    byzantine: int,
    seeds: int,
    first_seed: int,
    seed: int | None,
    jobs: int,
    behaviours: tuple[str, ...],
    timeout_ms: int,
    chaos_ms: int,
    calm_ms: int,
    bad_period_s: float,
    bad_delay_ms: int,
    bad_loss: float,
    no_crashes: bool,
    as_json: bool,
    epochs: bool,
    epoch_length: int,
    attack: str | None,
) -> None:
    """Run n validators of the real consensus core over a virtual network.

    Each seed draws message delays, loss, duplication, reordering, partitions
    that heal, crashes with restarts from persisted state, and which validators
    are Byzantine (--behaviour lists them). With --bad-period-s, the faulty
    phase is instead a network slower than the view timeout (every message
    delayed by --bad-delay-ms, some lost). After every seed the checkers test
    agreement, validity, no honest double-sign, that every certificate an
    honest validator accepts verifies and names its block's height, liveness
    (sustained commits after healing, and during a slow but lossless bad
    period), messages per committed block and memory held per validator.

    One line is printed per failing seed with the command that replays it; the
    exit status is 1 if any seed violated a property.

    \b
    Examples:
      seqnet sim -n 4 -f 1 --seeds 500
      seqnet sim -n 7 -f 2 --seeds 10000 --json
      seqnet sim -n 4 -f 1 --seed 1234        # replay one seed
      seqnet sim --behaviour height-forger --seeds 200
      seqnet sim --bad-period-s 60 --bad-delay-ms 250 --calm-ms 10000
      seqnet sim --attack all                 # every attack, n = 4 and 7
      seqnet sim --attack censor -n 7 --seeds 50 --json
      seqnet sim --epochs --seeds 200        # a rotating validator set
    """
    if attack is not None:
        _attack(ctx, attack, validators, seeds, first_seed, seed, as_json)
        return
    if epochs:
        _epochs(
            byzantine,
            seeds,
            first_seed,
            seed,
            jobs,
            behaviours,
            timeout_ms,
            chaos_ms,
            calm_ms,
            epoch_length,
            as_json,
        )
        return
    if validators < 1:
        raise click.BadParameter("need at least one validator", param_hint="--validators")
    if not 0 <= byzantine < validators:
        raise click.BadParameter("must be in [0, validators)", param_hint="--byzantine")
    if seeds < 1:
        raise click.BadParameter("must be at least 1", param_hint="--seeds")
    if min(timeout_ms, chaos_ms, calm_ms) <= 0:
        raise click.BadParameter("timeouts and phase lengths must be positive")
    if bad_period_s < 0 or bad_delay_ms < 0:
        raise click.BadParameter("the bad period and its delay must not be negative")
    if 3 * byzantine >= validators:
        click.echo(
            f"warning: f={byzantine} exceeds the fault bound for n={validators}; "
            "violations are expected",
            err=True,
        )
    params = SimParams(
        validators=validators,
        byzantine=byzantine,
        view_timeout_ms=timeout_ms,
        retry_ms=timeout_ms,
        chaos_ms=chaos_ms,
        calm_ms=calm_ms,
        crashes=not no_crashes,
        behaviours=behaviours,
        bad_period_ms=int(bad_period_s * 1000),
        bad_delay_ms=bad_delay_ms,
        bad_loss=bad_loss,
    )
    seed_list = [seed] if seed is not None else list(range(first_seed, first_seed + seeds))
    jobs = jobs or (os.cpu_count() or 1)
    done = 0

    def report(result: SeedResult) -> None:
        nonlocal done
        done += 1
        if result.violations:
            click.echo(
                f"FAIL seed {result.seed} [{', '.join(result.behaviours) or 'no byzantine'}]: "
                f"{'; '.join(result.violations)}\n  replay: {_replay_command(params, result.seed)}"
            )
        elif seed is not None and not as_json:
            click.echo(
                f"ok seed {result.seed} [{', '.join(result.behaviours) or 'no byzantine'}]: "
                f"height {result.committed_height}, recovery "
                f"{result.recovery_timeouts} timeouts, {result.messages} messages, "
                f"{result.evidence} evidence reports"
            )
        if not as_json and sys.stderr.isatty() and done % 10 == 0:
            click.echo(f"\r{done}/{len(seed_list)} seeds", nl=False, err=True)

    summary = run_many(params, seed_list, jobs=jobs, on_result=report)
    if as_json:
        click.echo(json.dumps(summary.as_json(), sort_keys=True))
    else:
        if sys.stderr.isatty():
            click.echo("\r", nl=False, err=True)
        click.echo(
            f"seeds {summary.seeds}  failed {len(summary.failed_seeds)}  "
            f"violations {summary.violations}  committed blocks {summary.committed_blocks}\n"
            f"good-case commit: {summary.good_case_commit_delays:g} message delays after "
            f"proposal\n"
            f"recovery after healing: at most {summary.max_recovery_timeouts:.2f} view "
            f"timeouts (bound {summary.liveness_bound_timeouts:g} with no timeout backed off "
            f"at the heal, x1.5 per level for f + 1 views; highest level "
            f"{summary.max_level_at_heal}; worst seed at "
            f"{summary.max_recovery_share:.0%} of its bound)\n"
            f"messages after healing: at most {summary.max_messages_per_block:g} n^2 per "
            f"committed block\n"
            f"evidence reports {summary.evidence}  malformed messages rejected "
            f"{summary.malformed_rejected}  messages {summary.messages}  "
            f"({summary.elapsed_s:.1f} s)"
        )
    if summary.violations:
        sys.exit(1)


def _attack(
    ctx: click.Context,
    attack: str,
    validators: int,
    seeds: int,
    first_seed: int,
    seed: int | None,
    as_json: bool,
) -> None:
    explicit = click.core.ParameterSource.DEFAULT
    if ctx.get_parameter_source("validators") == explicit:
        sizes: list[int] = list(COMMITTEE_SIZES)
    else:
        if not 4 <= validators <= 64:
            raise click.BadParameter("the attacks need 4 to 64 validators", param_hint="-n")
        sizes = [validators]
    if ctx.get_parameter_source("seeds") == explicit:
        seeds = DEFAULT_SEEDS
    if seeds < 1:
        raise click.BadParameter("must be at least 1", param_hint="--seeds")
    seed_list = [seed] if seed is not None else list(range(first_seed, first_seed + seeds))
    names = list(ATTACKS) if attack == "all" else [attack]
    if run_attacks(names, sizes, seed_list, as_json):
        sys.exit(1)


def _epochs(
    byzantine: int,
    seeds: int,
    first_seed: int,
    seed: int | None,
    jobs: int,
    behaviours: tuple[str, ...],
    timeout_ms: int,
    chaos_ms: int,
    calm_ms: int,
    epoch_length: int,
    as_json: bool,
) -> None:
    """`seqnet sim --epochs`: the rotating-set simulator (consensus/sim/epochs.py)."""
    if seeds < 1:
        raise click.BadParameter("must be at least 1", param_hint="--seeds")
    if min(timeout_ms, chaos_ms, calm_ms) <= 0:
        raise click.BadParameter("timeouts and phase lengths must be positive")
    if not 2 <= epoch_length <= 10_000:
        raise click.BadParameter("must be between 2 and 10000", param_hint="--epoch-length")
    params = EpochSimParams(
        epoch_length=epoch_length,
        byzantine=byzantine > 0,
        behaviours=behaviours or EpochSimParams().behaviours,
        view_timeout_ms=timeout_ms,
        retry_ms=timeout_ms,
        faulty_ms=chaos_ms,
        run_ms=chaos_ms + 3 * calm_ms + epoch_length * 100,
    )
    seed_list = [seed] if seed is not None else list(range(first_seed, first_seed + seeds))
    started = time.perf_counter()

    def report(result: EpochSeedResult) -> None:
        label = ", ".join(result.byzantine) or "no byzantine"
        if result.violations:
            click.echo(
                f"FAIL seed {result.seed} [{label}]: {'; '.join(result.violations)}\n"
                f"  replay: seqnet sim --epochs --seed {result.seed} -f {byzantine} "
                f"--timeout-ms {timeout_ms} --chaos-ms {chaos_ms} --calm-ms {calm_ms} "
                f"--epoch-length {epoch_length}" + "".join(f" --behaviour {b}" for b in behaviours)
            )
        elif seed is not None and not as_json:
            heights = ", ".join(f"{m}:{h}" for m, h in sorted(result.heights.items()))
            ends = ", ".join(f"{e}@{t}ms" for e, t in sorted(result.ended_at.items()))
            click.echo(
                f"ok seed {result.seed} [{label}]: heights by machine {heights}; "
                f"epochs ended {ends}"
            )

    summary = run_epoch_seeds(
        params, seed_list, jobs=jobs or (os.cpu_count() or 1), on_result=report
    )
    elapsed = time.perf_counter() - started
    per_epoch = summary.epochs(params)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "seeds": summary.seeds,
                    "violations": summary.violations,
                    "failed_seeds": sorted(summary.failed_seeds),
                    "epochs": per_epoch,
                    "min_final_height": summary.min_final_height,
                    "malformed_rejected": summary.malformed,
                    "messages": summary.messages,
                    "elapsed_s": round(elapsed, 2),
                },
                sort_keys=True,
            )
        )
    else:
        click.echo(
            f"seeds {summary.seeds}  failed {len(summary.failed_seeds)}  "
            f"violations {summary.violations}  lowest final height {summary.min_final_height}"
        )
        for e in per_epoch:
            last = e["last_height"] if e["last_height"] is not None else "-"
            ended = (
                f"ended in {e['ended_seeds']}/{summary.seeds} seeds, "
                f"by {e['max_end_ms']} ms at the latest"
                if e["last_height"] is not None
                else "last epoch, never ends"
            )
            click.echo(
                f"epoch {e['epoch']}: heights {e['first_height']}..{last}, validators "
                f"{e['validators']} weights {e['weights']}; {ended}"
            )
        click.echo(f"messages {summary.messages}  ({elapsed:.1f} s)")
    if summary.violations:
        sys.exit(1)
