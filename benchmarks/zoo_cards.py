"""Re-checks every shipped preset's likelihood card in full, and writes the zoo's table.

    python benchmarks/zoo_cards.py --table            # zoo/README.md's table from the cards
    python benchmarks/zoo_cards.py --check [--preset NAME] [--methods iwae,ais]

--check reruns each card's evaluations with the settings and seed written on the card (IWAE-5000 on
the 10k test images, AIS with the card's budget) and reports the difference from the card in units
of its standard error; the same seed on the same machine gives the same number up to float
rounding. Results go to benchmarks/results/zoo_cards.json.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def table(index):
    from tfdgm import zoo

    lines = ["| preset | objective | epochs | test NLL (IWAE-5000, 10k) | AIS NLL | BDMC gap | active units | size |",
             "|---|---|---|---|---|---|---|---|"]
    for name in sorted(index):
        card = zoo.read_metadata(os.path.join(ROOT, "zoo", name))
        ev = card["evaluation"]
        iwae, ais, bdmc = ev.get("iwae") or {}, ev.get("ais") or {}, ev.get("bdmc") or {}
        ais_text = (f"{ais['nll']:.2f} ± {ais['nll_stderr']:.2f} ({ais.get('num_examples') or 10000} images, "
                    f"T={ais['num_steps']}, {ais['num_chains']} chains)" if ais else "—")
        bdmc_text = f"{bdmc['gap']:.2f} ± {bdmc['gap_stderr']:.2f} (T={bdmc['num_steps']})" if bdmc else "—"
        diag = ev.get("latent_diagnostics") or {}
        units = f"{diag['active_units']} / {card['training']['config']['model'].get('latent_dim')}" if diag else "—"
        size = sum(f["size"] for f in card["files"].values()) / 1e6
        lines.append(f"| `{name}` | {card['objective']} | {card['training']['epochs']} | {iwae['nll']:.2f} ± {iwae['stderr']:.2f} | {ais_text} | "
                     f"{bdmc_text} | {units} | {size:.1f} MB |")
    return "\n".join(lines)


def check(name, methods):
    from tfdgm import config as cfg
    from tfdgm import evaluation, zoo
    from tfdgm.experiment import workdir as wd

    card = zoo.read_metadata(os.path.join(ROOT, "zoo", name))
    model = zoo.from_preset(name)
    config = cfg.from_dict(card["training"]["config"])
    ev, out = card["evaluation"], {}
    if "iwae" in methods and ev.get("iwae"):
        settings = ev["iwae"]
        images = wd.test_images(config, settings["num_examples"], 100)
        start = time.perf_counter()
        nll, se = evaluation.iwae_nll(model, images, num_samples=settings["num_samples"], seed=settings["seed"],
                                      verbose=False)
        out["iwae"] = {"card": settings["nll"], "rerun": nll, "stderr": se, "time_s": time.perf_counter() - start,
                       "difference_in_se": (nll - settings["nll"]) / settings["stderr"]}
    if "ais" in methods and ev.get("ais"):
        s = ev["ais"]
        images = wd.test_images(config, s.get("num_examples") or 0, 100)
        start = time.perf_counter()
        result = evaluation.ais_log_likelihoods(
            model, images, num_steps=s["num_steps"], num_chains=s["num_chains"], leapfrog_steps=s["leapfrog_steps"],
            schedule=s["schedule"], start=s["start"], seed=s.get("seed", 0), verbose=False).summary()
        out["ais"] = {"card": s["nll"], "rerun": result["nll"], "stderr": result["nll_stderr"],
                      "time_s": time.perf_counter() - start,
                      "difference_in_se": (result["nll"] - s["nll"]) / s["nll_stderr"]}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="store_true")
    parser.add_argument("--check", action="store_true")
    parser.add_argument("--preset", action="append")
    parser.add_argument("--methods", default="iwae,ais")
    args = parser.parse_args()
    from tfdgm import zoo

    index = zoo.load_index()
    if args.table:
        print(table(index))
    if args.check:
        results = {}
        for name in args.preset or sorted(index):
            results[name] = check(name, args.methods.split(","))
            print(name, json.dumps(results[name], indent=1), flush=True)
        path = os.path.join(ROOT, "benchmarks", "results", "zoo_cards.json")
        with open(path, "w") as f:
            json.dump({"load_average": os.getloadavg(), "results": results}, f, indent=1)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
