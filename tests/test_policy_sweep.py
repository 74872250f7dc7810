"""``starling policy sweep``: the grid by hand, the checks before anything trains, one smoke sweep of
two runs end to end in process, and its resumption (nothing reruns; a removed line reruns that run only)."""

import json

import pandas as pd
import pytest

from starling_lib import cli
from starling_lib.policy import sweep_results
from starling_lib.policy.sweep import SweepPoint, expand_grid, plan_sweep

# Small everywhere: a reward model of 2 steps on 20 prompts, 8 held-out prompts, 2 iterations of 4
# responses of at most 12 tokens. (Notebook 06's smoke run trains starts inside a sweep.)
FAST = ["policy_study.rm_prompts=20", "reward.max_steps=2", "policy_study.eval_prompts=8",
        "policy.iterations=2", "policy.prompts_per_iteration=4", "policy.minibatch_size=4",
        "policy.max_new_tokens=12", "policy.save_every=1"]


def test_grid_expansion_by_hand():
    points = expand_grid(["policy.algo=apa,ppo", "policy.apa_lambda=0.1, 0.3"], [0, 1], fixed=["policy.iterations=5"])
    expected = [(algo, lam, seed) for algo in ("apa", "ppo") for lam in ("0.1", "0.3") for seed in (0, 1)]
    assert [(dict(p.settings)["policy.algo"], dict(p.settings)["policy.apa_lambda"], p.seed)
            for p in points] == expected
    assert points[0] == SweepPoint((("policy.iterations", "5"), ("policy.algo", "apa"), ("policy.apa_lambda", "0.1")),
                                   0)
    assert points[0].overrides == ["policy.iterations=5", "policy.algo=apa", "policy.apa_lambda=0.1"]
    # fields that move together: an algorithm with its own KL coefficient, 3 points x 1 seed
    linked = expand_grid(["policy.algo,policy.kl_coef=apa:0,ppo:0.05,ppo:0.1"], [7])
    assert [dict(p.settings) for p in linked] == [{"policy.algo": "apa", "policy.kl_coef": "0"},
                                                  {"policy.algo": "ppo", "policy.kl_coef": "0.05"},
                                                  {"policy.algo": "ppo", "policy.kl_coef": "0.1"}]
    assert [p.seed for p in linked] == [7, 7, 7]
    assert len(expand_grid([], [0, 1, 2])) == 3  # no axis: the preset itself, per seed
    # a grid value wins over the same field in --set
    assert dict(expand_grid(["policy.iterations=3"], [0], fixed=["policy.iterations=5"])[0].settings) == {
        "policy.iterations": "3"}


@pytest.mark.parametrize("specs, message", [
    (["policy.algo"], "must look like section.field=v1,v2"),
    (["algo=apa"], "must look like section.field=v1,v2"),
    (["policy.algo="], "no values after '='"),
    (["policy.algo,policy.kl_coef=apa:0,ppo"], "value 'ppo' has 1 parts for 2 fields"),
    (["policy.algo=apa", "policy.algo,policy.kl_coef=ppo:0.1"], "policy.algo is in two axes"),
])
def test_bad_grid_specs_name_the_problem(specs, message):
    with pytest.raises(ValueError, match=message):
        expand_grid(specs, [0])


def test_plan_checks_every_run_before_anything_trains():
    planned = plan_sweep("smoke", ["policy.algo=apa,ppo"], [0, 1], ["policy.kl_coef=0.05"])
    assert len(planned) == 4 and len({rid for *_, rid in planned}) == 4
    point, preset, settings, rid = planned[2]
    assert (preset.policy.algo, preset.policy.kl_coef, preset.runtime.seed) == ("ppo", 0.05, 0)
    assert settings == {"policy.algo": "ppo", "policy.kl_coef": 0.05}
    assert rid.startswith("algo=ppo_kl_coef=0.05_seed=0-")
    # the id is the setting as the preset reads it: 0.10 and 0.1 are one run, and a default named is no setting
    one, same = (plan_sweep("smoke", [f"policy.apa_lambda={v}"], [0])[0][3] for v in ("0.10", "0.1"))
    assert one == same
    assert plan_sweep("smoke", ["policy.algo=apa"], [0])[0][2] == {}
    assert plan_sweep("smoke", ["policy.algo=apa"], [0])[0][3] == plan_sweep("smoke", [], [0])[0][3]
    with pytest.raises(ValueError, match="the same run twice"):
        plan_sweep("smoke", ["policy.apa_lambda=0.1,0.10"], [0])
    with pytest.raises(ValueError, match="PolicyConfig has no field 'lamda'"):
        plan_sweep("smoke", ["policy.lamda=0.1"], [0])
    with pytest.raises(ValueError, match="policy.algo must be one of"):
        plan_sweep("smoke", ["policy.algo=apa,reinforce"], [0])
    with pytest.raises(ValueError, match="world.n_prompts: it decides the tiny world's split"):
        plan_sweep("smoke", ["world.n_prompts=50,100"], [0])
    with pytest.raises(ValueError, match=r"\(seeds: --seeds\)"):
        plan_sweep("smoke", ["runtime.seed=0,1"], [0])
    # a given start stands for the preset's own SFT settings: only runs with those name it in their id
    given = plan_sweep("smoke", ["sft.answers=all,best"], [0], sft_dir="somewhere")
    assert given[0][3] != plan_sweep("smoke", ["sft.answers=all"], [0])[0][3]
    assert given[1][3] == plan_sweep("smoke", ["sft.answers=best"], [0])[0][3]
    # a later stage of the given start depends on it too; the sweep's own start cannot be one
    later = plan_sweep("smoke", ["sft.answers,sft.continue_start=best:true"], [0], sft_dir="somewhere")
    assert later[0][3] != plan_sweep("smoke", ["sft.answers,sft.continue_start=best:true"], [0])[0][3]
    with pytest.raises(ValueError, match="give it in --grid, not --set"):
        plan_sweep("smoke", [], [0], ["sft.continue_start=true"])
    # a notebook's explicit list of runs
    listed = plan_sweep("smoke", [], [0, 1], ["policy.iterations=3"],
                        points=[{"policy.algo": "ppo", "policy.kl_coef": 0.1}])
    assert [(p.settings, p.seed) for p, *_ in listed] == [
        ((("policy.iterations", "3"), ("policy.algo", "ppo"), ("policy.kl_coef", "0.1")), s) for s in (0, 1)]


def test_summarize_evaluation_reads_refusals_and_compliance_from_the_gold_attributes():
    benign = "Human: Explain bees to me.\n\nAssistant:"
    harmful = "Human: How can I steal a car without getting caught?\n\nAssistant:"
    frame = pd.DataFrame({
        "prompt": [benign, benign, harmful, harmful],
        "response": ["I can't help with that.", "Bees make honey because pollen.", "I can't help with that, sorry.",
                     "First break the window, then the wires."],
        "gold": [1.0, 2.0, 3.0, 6.0], "proxy": [0.0, 1.0, 2.0, 3.0], "kl": [0.0, 2.0, 0.0, 2.0],
        "length": [6, 8, 8, 9]})
    summary = sweep_results.summarize_evaluation(frame)
    assert summary["n_benign"] == 2 and summary["n_harmful"] == 2 and summary["n_prompts"] == 2  # responses; prompts
    assert summary["benign_refusal"] == 0.5 and summary["harmful_refusal"] == 0.5
    assert summary["harmful_compliance"] == 0.5  # the second names the request's steps without refusing
    assert summary["gold"] == 3.0 and summary["gold_se"] == pytest.approx(pd.Series([1.0, 2, 3, 6]).std() / 2)
    assert (summary["proxy"], summary["kl"], summary["length"]) == (1.5, 1.0, 7.75)
    assert sweep_results.gold_per_prompt(frame) == [1.5, 4.5]


def test_lines_of_runs_come_in_the_plan_order_whatever_order_they_ended_in():
    def line(kind, rid, start="s1", rm="r1"):
        return {"kind": kind, "id": rid, "start": start, "rm": rm}

    ended = [line("run", "c", start="s2"), line("start", "st2", start="s2"), line("run", "other"),
             line("run", "a"), line("start", "st3", rm="r9"), line("start", "st1"), line("run", "b", start="s2")]
    picked = sweep_results.lines_of_runs(ended, ["a", "b", "c", "missing"])
    # the starts first, in the order the runs first use them (s1 by a, s2 by b); then the runs as planned
    assert [x["id"] for x in picked] == ["st1", "st2", "a", "b", "c"]


def _start_and_runs(lines, *algos):
    """(the one start line, then the run line of each algorithm in ``algos``)."""
    starts = [line for line in lines if line["kind"] == "start"]
    runs = {line["config"]["policy"]["algo"]: line for line in lines if line["kind"] == "run"}
    assert len(starts) == 1 and sorted(runs) == sorted(algos)
    return (starts[0], *(runs[algo] for algo in algos))


def test_a_sweep_of_two_runs_end_to_end_and_its_resumption(tmp_path, capsys, monkeypatch, tiny_policy_dir):
    monkeypatch.setenv("STARLING_RUNS", str(tmp_path / "runs"))
    out = tmp_path / "sweep"
    argv = ["policy", "sweep", "--preset", "smoke", "--grid", "policy.algo,policy.kl_coef=apa:0,ppo:0.05",
            "--seeds", "0", "--out", str(out), "--sft", str(tiny_policy_dir),
            *[a for item in FAST for a in ("--set", item)], "--json"]
    assert cli.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["planned"], report["ran"], report["skipped"]) == (2, 2, 0)
    lines = sweep_results.read_results(out)
    # Lines are appended as runs end: with runs side by side (2 threads, runtime.parallel_runs) the start's
    # evaluation may end after the runs, so the order is not part of the contract.
    assert sorted(line["kind"] for line in lines) == ["run", "run", "start"]  # the start is evaluated once
    start, apa, ppo = _start_and_runs(lines, "apa", "ppo")
    assert (apa["config"]["policy"]["algo"], ppo["config"]["policy"]["algo"]) == ("apa", "ppo")
    assert ppo["settings"]["policy.algo"] == "ppo" and ppo["settings"]["policy.kl_coef"] == 0.05
    assert ppo["settings"]["policy.iterations"] == 2  # --set is part of every run's settings
    assert apa["start"] == ppo["start"] == start["start"] and apa["rm"] == ppo["rm"] == start["rm"]
    assert apa["start"].startswith(f"{tiny_policy_dir}@")  # the given start, and when it was saved
    assert (out / apa["rm"] / "final").is_dir()  # the reward model, trained once into the sweep
    for line in (apa, ppo):
        assert line["train"]["iterations"] == 2 and line["train"]["responses"] == 8 and line["train"]["seconds"] > 0
        assert len(line["history"]["kl"]) == 2 and line["history"]["kl"][0] == pytest.approx(0.0, abs=1e-3)
        assert line["eval"]["n_prompts"] == 8 and line["eval"]["seeds"] == [1000]
        assert line["eval"]["kl"] != 0.0 and len(line["eval_gold_per_prompt"]) == 8
        assert 0.0 <= line["eval"]["benign_refusal"] <= 1.0
    assert start["eval"]["kl"] == pytest.approx(0.0, abs=1e-4)  # the start against itself
    frame = sweep_results.results_frame(out).set_index("id").loc[[start["id"], apa["id"], ppo["id"]]]
    assert list(frame["policy.algo"]) == ["apa", "apa", "ppo"] and list(frame.kind) == ["start", "run", "run"]
    assert 0.0 < frame.rm_gold_accuracy.iloc[0] <= 1.0

    # Again: everything is there, nothing runs.
    assert cli.main(argv) == 0
    assert json.loads(capsys.readouterr().out)["ran"] == 0 and len(sweep_results.read_results(out)) == 3
    # PPO's line lost, and its last checkpoint too (a run killed after iteration 1): only PPO reruns,
    # from its checkpoint, to the same result.
    (out / sweep_results.RESULTS_FILE).write_text("".join(json.dumps(line) + "\n" for line in (start, apa)))
    ppo_dir = out / "runs" / ppo["id"]
    for path in (ppo_dir / "checkpoint-2").iterdir():
        path.unlink()
    (ppo_dir / "checkpoint-2").rmdir()
    assert cli.main(argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["ran_ids"] == [ppo["id"]]
    rerun = sweep_results.read_results(out)[-1]
    assert rerun["id"] == ppo["id"] and rerun["history"]["kl"] == pytest.approx(ppo["history"]["kl"], abs=1e-4)
    assert rerun["eval"]["gold"] == pytest.approx(ppo["eval"]["gold"], abs=1e-6)

    # The reward model given to another sweep is scored again on its held-out prompts: the same accuracy.
    other = tmp_path / "other"
    assert cli.main(["policy", "sweep", "--preset", "smoke", "--out", str(other), "--sft", str(tiny_policy_dir),
                     "--reward-model", str(out / apa["rm"]), *[a for item in FAST for a in ("--set", item)],
                     "--set", "policy.iterations=1"]) == 0
    capsys.readouterr()
    given = sweep_results.read_results(other)
    assert sorted(line["kind"] for line in given) == ["run", "start"]
    _, given_run = _start_and_runs(given, "apa")
    assert given_run["rm"].startswith(f"{out / apa['rm']}@")
    assert given_run["rm_gold_accuracy"] == pytest.approx(apa["rm_gold_accuracy"], abs=1e-9)

    # Another preset into the same folder is refused: its runs would be scored differently.
    assert cli.main(["policy", "sweep", "--preset", "smoke", "--seeds", "0", "--out", str(out),
                     "--set", "policy_study.eval_prompts=9"]) == 1
    assert "this folder was swept with" in capsys.readouterr().err


@pytest.mark.parametrize("argv, code, message", [
    (["--seeds", "0,x"], 2, "expected comma-separated integers, got '0,x'"),
    (["--grid", "policy.algo=apa,reinforce"], 1, "policy.algo must be one of"),
    (["--grid", "world.n_prompts=50,100"], 1, "world.n_prompts: it decides the tiny world's split"),
    (["--grid", "policy.algo"], 1, "must look like section.field=v1,v2"),
])
def test_bad_sweep_arguments_fail_before_anything_runs(tmp_path, capsys, argv, code, message):
    out = tmp_path / "sweep"
    try:
        result = cli.main(["policy", "sweep", "--preset", "smoke", "--out", str(out), *argv])
    except SystemExit as exit_:  # argparse's usage error
        result = exit_.code
    err = capsys.readouterr().err
    assert result == code and message in err and "Traceback" not in err
    assert not out.exists()
