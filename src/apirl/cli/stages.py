"""The stage commands: each loads the run config, runs the data stage it reads, calls the stage's one entry point
with its own tables (the pipeline calls the same ones), and prints the summary the stage returns."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Annotated, Any

import typer

from apirl.cli.options import (
    ConfigOpt,
    ForceOpt,
    JsonOpt,
    ResumeOpt,
    SetOpt,
    app,
    console,
    data_app,
    err_console,
    eval_app,
    feedback_app,
    friendly_errors,
    prepare_data_stage,
    print_json,
    run_config,
    stage_summary,
)
from apirl.errors import InputError
from apirl.jsonl import check_writable


@data_app.command("prepare")
@friendly_errors
def data_prepare_cmd(config: ConfigOpt = None, set_: SetOpt = None,
                     force: Annotated[bool, typer.Option(help="Redo even if up to date.")] = False) -> None:
    """Write the examples of every split to runs/<name>/data/ (the input of SFT and feedback)."""
    from apirl.data.stage import prepare_data

    cfg = run_config(config, set_)
    result = prepare_data(cfg.data, cfg.layout, cfg.seed, force=force)
    state = "up to date, skipped" if result.skipped else f"done in {result.manifest['wall_time_s']} s"
    console.print(f"data stage {state}: {result.stage_dir}")


@eval_app.command("run")
@friendly_errors
def eval_run_cmd(
    labels: Annotated[list[str] | None, typer.Option("--label", help="A model's responses in the run "
                                                     "(generate/<label>/); default: every one there. The "
                                                     "stage holds these labels only; one already scored "
                                                     "from the same responses keeps its scores.")] = None,
    limit: Annotated[int | None, typer.Option(help="Score the first N questions of the split (0: all); "
                                                   "default: generate.limit, what the run generates.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Score again even if up to date.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """The eval stage: score the run's responses (runs/<name>/generate/*) with every metric, executability
    included, beside Gorilla-7B on the same questions; writes runs/<name>/eval/ with its manifest."""
    from apirl.evaluate.stage import run_eval
    from apirl.evaluate.tables import results_table

    cfg = run_config(config, set_)
    chosen = labels or cfg.layout.labels()
    if not chosen:
        raise InputError("no responses in the run: run `apirl generate` first", path=cfg.layout.root / "generate")
    result = run_eval(cfg.eval, cfg.execution, cfg.data, cfg.layout, cfg.seed, chosen,
                      limit=cfg.generate.limit if limit is None else limit,
                      gorilla_exec=cfg.pipeline.gorilla_exec, force=force)
    summaries = result.summary or {}
    if as_json:
        print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, "models": summaries})
        return
    print(results_table(list(summaries.items())))
    console.print(f"eval {'up to date, skipped' if result.skipped else 'done'}: {result.stage_dir}")


@app.command("generate")
@friendly_errors
def generate_cmd(
    model: Annotated[str | None, typer.Option(help="smollm2-135m, tiny-random, hf:<id-or-path>, or a directory "
                                                   "(an SFT/RL output).")] = None,
    label: Annotated[str | None, typer.Option(help="Name of the responses in the run (runs/<name>/generate/"
                                                   "<label>/); default: the model's stage or its spec.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also copy the responses (Gorilla's format) "
                                                                 "to this file.")] = None,
    split: Annotated[str | None, typer.Option(help="train, val or test.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples (0: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Generate again even if up to date.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Generate a model's responses to a split of the data stage, as a stage of the run (with its manifest);
    skipped when up to date, resumes an interrupted run of the same settings."""
    from apirl.models.stage import default_label, run_generate

    overrides = list(set_ or [])
    if model is not None:
        overrides.append(f"model.name={json.dumps(model)}")
    if split is not None:
        overrides.append(f"generate.split={json.dumps(split)}")
    if limit is not None:
        overrides.append(f"generate.limit={limit}")
    cfg = run_config(config, overrides)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        check_writable(out, what="responses file")
    prepare_data_stage(cfg)
    label = label or default_label(cfg.model.name, cfg.layout, cfg.generate.grounding)
    result = run_generate(cfg.generate, cfg.model, cfg.layout, cfg.seed, label, force=force, console=err_console)
    summary = result.summary or {}
    responses = cfg.layout.responses(label)
    if out is not None:
        shutil.copyfile(responses, out)
    if as_json:
        print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
    else:
        state = "up to date, skipped" if result.skipped else "done"
        console.print(f"generate {state}: {summary.get('n')} responses in {responses} ({summary.get('new_tokens')} "
                      f"new tokens, {summary.get('tokens_per_s')} tok/s); score it with: apirl eval responses "
                      f"{out or responses}")


@app.command("sft")
@friendly_errors
def sft_cmd(
    config: ConfigOpt = None, set_: SetOpt = None,
    resume: ResumeOpt = False, force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Supervised fine-tuning (M_SFT) on the train split; the model lands in runs/<name>/sft/model."""
    from apirl.train.sft import run_sft

    cfg = run_config(config, set_)
    prepare_data_stage(cfg)
    result = run_sft(cfg.sft, cfg.model, cfg.layout, cfg.seed, resume=resume, force=force)
    summary = stage_summary(result)
    if as_json:
        print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
    else:
        state = "up to date, skipped" if result.skipped else "trained"
        console.print(f"M_SFT {state}: {result.stage_dir / 'model'} (steps {summary.get('steps')}, "
                      f"loss {summary.get('first_loss')} -> {summary.get('last_loss')}, "
                      f"val loss {summary.get('eval_loss')})")


@app.command("reward")
@friendly_errors
def reward_cmd(
    config: ConfigOpt = None, set_: SetOpt = None,
    resume: ResumeOpt = False, force: ForceOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Train the reward model on the feedback (classifier on the labels, or pairwise on the pairs); reports
    held-out accuracy and AUC and how often gold code outscores its mutants; lands in runs/<name>/reward/model."""
    from apirl.train.reward import run_reward

    cfg = run_config(config, set_)
    prepare_data_stage(cfg)
    with redirect_stdout(sys.stderr):  # the Trainer prints its log lines on stdout: keep --json's stdout clean
        result = run_reward(cfg.reward, cfg.model, cfg.layout, cfg.seed, calibrate_split=cfg.feedback.calibrate_split,
                            mutant_seed=cfg.execution.mutant_seed, resume=resume, force=force)
    summary = stage_summary(result)
    if as_json:
        print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
        return
    state = "up to date, skipped" if result.skipped else "trained"
    gold = summary.get("gold_vs_mutant", {})
    console.print(f"reward model ({summary.get('kind')}) {state}: {result.stage_dir / 'model'} (steps "
                  f"{summary.get('steps')}, loss {summary.get('first_loss')} -> {summary.get('last_loss')})")
    if summary.get("fresh_weights"):
        console.print(f"fresh, seeded weights on top of {summary.get('base')}: {summary['fresh_weights']}")
    console.print(f"held out {summary.get('heldout_examples')} prompts / {summary.get('heldout_samples')} samples: "
                  f"accuracy {summary.get('heldout_accuracy')} ({summary.get('accuracy_of')}), "
                  f"AUC {summary.get('heldout_auc')}")
    console.print(f"gold above its mutants on {gold.get('split')} ({gold.get('examples')} examples, "
                  f"{gold.get('pairs')} pairs): {gold.get('rate')}; per kind "
                  + ", ".join(f"{kind} {row['rate']} (n={row['pairs']})"
                              for kind, row in gold.get("per_kind", {}).items()))


@app.command("rl")
@friendly_errors
def rl_cmd(
    config: ConfigOpt = None, set_: SetOpt = None,
    resume: ResumeOpt = False, force: ForceOpt = False,
    check_reward: Annotated[bool, typer.Option(
        "--check-reward", help="Train nothing: score gold val answers against their mutants with the reward of "
        "[rl] and each of its terms (the reward stage's pairs); writes runs/<name>/reward-check/.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """RL fine-tuning of the policy: `rl.algorithm` = ppo, grpo, rloo (against the reward of [rl]) or dpo (on the
    feedback's preference pairs). The policy lands in runs/<name>/<algorithm>/model, the log in log.jsonl beside."""
    from apirl.pipeline.run import rl_stage

    cfg = run_config(config, set_)
    prepare_data_stage(cfg)
    if check_reward:
        _check_reward(cfg, as_json)
        return
    with redirect_stdout(sys.stderr):
        result = rl_stage(cfg, resume=resume, force=force)
    summary = stage_summary(result)
    if as_json:
        print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
        return
    state = "up to date, skipped" if result.skipped else "trained"
    if cfg.rl.algorithm == "dpo":
        progress = (f"loss {summary.get('first_loss')} -> {summary.get('last_loss')}, held-out preference accuracy "
                    f"{summary.get('heldout_preference_accuracy')}")
    else:
        progress = (f"reward {summary.get('first_reward')} -> {summary.get('last_reward')}, "
                    f"KL {summary.get('last_kl')}")
    console.print(f"{cfg.rl.algorithm} policy {state}: {result.stage_dir / 'model'} (steps {summary.get('steps')}, "
                  f"{progress})")


def _check_reward(cfg: Any, as_json: bool) -> None:
    """`apirl rl --check-reward`: how often the RL reward ranks a gold answer above each of its mutants."""
    from apirl.jsonl import write_jsonl
    from apirl.models.load import default_device
    from apirl.train.rewards import gold_vs_mutants

    with redirect_stdout(sys.stderr):
        summary, rows = gold_vs_mutants(cfg.rl, cfg.execution, cfg.reward, cfg.layout, default_device(),
                                        split=cfg.feedback.calibrate_split, mutant_seed=cfg.execution.mutant_seed)
    out = cfg.layout.root / "reward-check"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gold_vs_mutants.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    write_jsonl(out / "scores.jsonl", rows)
    if as_json:
        print_json(summary)
        return
    for name, rate in [("reward", summary), *summary["terms"].items()]:
        console.print(f"{name}: gold above its mutants {rate['rate']} of {rate['pairs']} pairs; per kind "
                      + ", ".join(f"{kind} {row['rate']}" for kind, row in rate["per_kind"].items()))
    console.print(f"written: {out}")


@app.command("run")
@friendly_errors
def run_cmd(
    config: ConfigOpt = None, set_: SetOpt = None,
    from_stage: Annotated[str | None, typer.Option("--from", help="First stage to run (data, sft, feedback, "
                                                                  "reward, rl, generate, eval, report).")] = None,
    until_stage: Annotated[str | None, typer.Option("--until", help="Last stage to run.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The whole pipeline: data, SFT, AI feedback, reward model, RL, generation for every model, evaluation
    (executability included), report. Up-to-date stages are skipped; a killed run resumes where it stopped."""
    from apirl.pipeline.run import run_pipeline

    cfg = run_config(config, set_)
    with redirect_stdout(sys.stderr):
        record = run_pipeline(cfg, from_stage=from_stage, until_stage=until_stage)
    if as_json:
        print_json(record)
        return
    for stage in record["stages"]:
        console.print(f"{stage['name']:<24} {stage['status']:<8} {stage['seconds']:>8.1f} s")
    report = cfg.layout.report_html
    console.print(f"report: {report}" if report.is_file() else f"run directory: {cfg.run_dir}")


@app.command("report")
@friendly_errors
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<name>).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report here instead of RUN_DIR.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write report.md and a self-contained report.html (plots embedded) from what RUN_DIR holds: results with
    95% intervals beside Gorilla-7B, training curves, judge calibration, cost per stage, config and versions."""
    from apirl.report import write_report

    files = write_report(run_dir, out)
    if as_json:
        print_json({"run_dir": str(run_dir), "markdown": str(files.markdown), "html": str(files.html)})
    else:
        console.print(f"wrote {files.markdown} and {files.html}")


@app.command("export")
@friendly_errors
def export_cmd(
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Default: results/<name>.")] = None,
    labels: Annotated[list[str] | None, typer.Option("--label", help="A scored model of the run (eval/<label>.json); "
                                                     "default: every one.")] = None,
    config: ConfigOpt = None, set_: SetOpt = None,
) -> None:
    """Copy a run's scored results (responses, per-question details, summaries, the SFT curve) and a meta.json
    (commit, config, seed, command and wall time of every stage) into results/, the evidence to commit."""
    from apirl.report.export import export_results

    cfg = run_config(config, set_)
    target = out or Path("results") / cfg.name
    meta = export_results(cfg.layout, target, config=cfg.model_dump(mode="json"), labels=labels)
    console.print(f"exported {len(meta['files'])} files of {', '.join(meta['models'])} to {target}")


@contextmanager
def _judge_errors() -> Iterator[None]:
    """A judge server that is down or refuses requests: one line (what to check) instead of a traceback."""
    from apirl.feedback.openai_judge import JudgeRequestError, JudgeUnavailable

    try:
        yield
    except (JudgeUnavailable, JudgeRequestError) as exc:
        raise InputError(f"{exc} The answers judged so far are cached: the same command resumes.") from exc


@feedback_app.callback()
@friendly_errors
def feedback_cmd(
    ctx: typer.Context, config: ConfigOpt = None, set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Redo even if an identical run finished (samples and "
                                                        "cached judgments are still reused).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sample K completions per train prompt from the policy (M_SFT by default), judge every one, and write
    runs/<name>/feedback/{samples,feedback,pairs}.jsonl and summary.json; a killed run resumes."""
    if ctx.invoked_subcommand is not None:
        return
    from apirl.feedback.stage import run_feedback

    cfg = run_config(config, set_)
    prepare_data_stage(cfg)
    with _judge_errors():
        result = run_feedback(cfg.feedback, cfg.model, cfg.execution, cfg.layout, cfg.seed, force=force,
                              console=err_console)
    summary = result.summary or {}
    if as_json:
        print_json({"stage_dir": str(result.stage_dir), "skipped": result.skipped, **summary})
        return
    state = "up to date, skipped" if result.skipped else "done"
    cost = summary.get("seconds_per_1000_judgments")
    console.print(f"feedback {state}: {result.stage_dir} ({summary.get('samples')} samples judged by "
                  f"{summary.get('judge')}, label rate {summary.get('label_rate')}, "
                  f"mean S {summary.get('mean_score')}, "
                  f"{summary.get('pairs')} pairs; {summary.get('judgments_made')} judgments made, "
                  f"{summary.get('cache_hits')} cached" + (f", {cost} s per 1000" if cost is not None else "") + ")")


@feedback_app.command("calibrate")
@friendly_errors
def feedback_calibrate_cmd(
    judge: Annotated[str | None, typer.Option(help="tools, local, openai or hybrid.")] = None,
    grounding: Annotated[bool | None, typer.Option("--grounding/--no-grounding", help="Give LLM judges the API "
                                                                                      "database row.")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N examples of the split (0: all).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Redo even if an identical calibration finished.")] = False,
    config: ConfigOpt = None, set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """AUC of a judge on the val split: gold answers (good) against their mutants (bad), per question and
    mutant kind; writes runs/<name>/calibration/<judge>[-grounded][-exec]/calibration.json (a stage per judge)."""
    from apirl.feedback.calibrate import print_calibration, run_calibration

    overrides = list(set_ or [])
    if judge is not None:
        overrides.append(f"feedback.judge={json.dumps(judge)}")
    if grounding is not None:
        overrides.append(f"feedback.grounding={str(grounding).lower()}")
    if limit is not None:
        overrides.append(f"feedback.calibrate_limit={limit}")
    cfg = run_config(config, overrides)
    prepare_data_stage(cfg)
    with _judge_errors():
        result = run_calibration(cfg.feedback, cfg.model, cfg.execution, cfg.layout, cfg.seed, force=force,
                                 console=err_console)
    report = result.summary or {}
    if as_json:
        print_json(report)
        return
    print_calibration(report, console)
    console.print(f"{'up to date: ' if result.skipped else 'wrote '}{result.stage_dir}")
