"""Category classification speed: 200,000 payloads over ~300 distinct (app, title) pairs.

Run by hand (pytest never collects it):

    /work/venv/bin/python benchmarks/bench_categories.py
    /work/venv/bin/python benchmarks/bench_categories.py --payloads 1000000 --distinct 3000

The payloads are drawn with a Zipf-like skew from ``--distinct`` (app, title)
pairs over ~30 realistic apps (browsers with a URL for their pages), so a few
pairs make most of the time, as in real activity. Classified with the default
rule set, figures:

* cold: a fresh ``Classifier`` over all payloads (every distinct payload
  searched once by every rule that looks at its keys, the rest cache hits);
* warm: the same classifier again over all payloads;
* uncached: ``cache_size=0``, every payload searched by every rule: the cost
  of one distinct payload, and what a cache miss costs;
* save-time check of the whole default rule set (timing probes), and the
  trusted load that skips them.
"""

from __future__ import annotations

import argparse
import random
import time
import tomllib

from worklens.categories import (
    Classifier,
    RuleSet,
    default_ruleset_text,
    load_default_ruleset,
    safety,
)

APPS: list[tuple[str, list[str], str]] = [
    # (app, title templates, url template or "")
    ("Code", ["{w}.py - worklens - Visual Studio Code", "{w}.md - notes - Visual Studio Code"], ""),
    ("jetbrains-pycharm", ["worklens \u2013 {w}.py"], ""),
    ("Gnome-terminal", ["me@host: ~/src/{w}", "{w}.txt (~/src) - NVIM"], ""),
    ("kitty", ["htop", "git log {w}"], ""),
    ("firefox", ["{w} - YouTube \u2014 Mozilla Firefox"], "https://www.youtube.com/watch?v={w}"),
    ("firefox", ["{w} \u00b7 GitHub \u2014 Mozilla Firefox"], "https://github.com/acme/{w}"),
    (
        "firefox",
        ["Inbox ({n}) - ana@example.com - Gmail \u2014 Mozilla Firefox"],
        "https://mail.google.com/mail/u/0/",
    ),
    ("firefox", ["{w} forecast \u2014 Mozilla Firefox"], "https://weather.example/{w}"),
    (
        "Google-chrome",
        ["{w} - Google Docs - Google Chrome"],
        "https://docs.google.com/document/d/{w}",
    ),
    ("Google-chrome", ["r/{w} - Google Chrome"], "https://www.reddit.com/r/{w}/"),
    ("Google-chrome", ["Hacker News - Google Chrome"], "https://news.ycombinator.com/item?id={n}"),
    ("Slack", ["{w} (Channel) - Acme - Slack"], ""),
    ("discord", ["#{w} | Python - Discord"], ""),
    ("Teams", ["Chat | {w} | Microsoft Teams", "{w} meeting | Microsoft Teams"], ""),
    ("zoom", ["Zoom Meeting"], ""),
    ("thunderbird", ["Inbox - {w} - Mozilla Thunderbird"], ""),
    ("OUTLOOK.EXE", ["Inbox - {w}@example.com - Outlook"], ""),
    ("libreoffice-writer", ["{w}.odt - LibreOffice Writer"], ""),
    ("WINWORD.EXE", ["{w}.docx - Word"], ""),
    ("evince", ["{w}.pdf"], ""),
    ("Spotify", ["{w} - Daft Punk"], ""),
    ("vlc", ["{w}.mp4 - VLC media player"], ""),
    ("steam", ["Steam"], ""),
    ("steam_app_570", ["Dota 2"], ""),
    ("gimp", ["[{w}] (imported)-1.0 (RGB color 8-bit gamma integer) \u2013 GIMP"], ""),
    ("Nautilus", ["{w}"], ""),
    ("org.gnome.Settings", ["Settings"], ""),
    ("keepassxc", ["{w}.kdbx - KeePassXC"], ""),
    ("obsidian", ["{w} - vault - Obsidian"], ""),
    ("Signal", ["Signal"], ""),
]
WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "report",
    "model",
    "spool",
    "ingest",
    "rollup",
    "agent",
    "plan",
    "budget",
]


def payloads(n: int, distinct: int, seed: int) -> tuple[list[dict[str, str]], int]:
    rng = random.Random(seed)
    pool: dict[tuple[str, str, str], None] = {}
    attempts = 0
    while len(pool) < distinct and attempts < distinct * 50:
        attempts += 1
        app, titles, url = rng.choice(APPS)
        w, k = rng.choice(WORDS) + str(rng.randrange(40)), str(rng.randrange(1, 99))
        title = rng.choice(titles).format(w=w, n=k)
        pool[(app, title, url.format(w=w, n=k))] = None
    pairs = list(pool)
    weights = [1 / (rank + 1) for rank in range(len(pairs))]  # Zipf, s = 1
    drawn = rng.choices(pairs, weights=weights, k=n)
    out = []
    for app, title, url in drawn:
        data = {"app": app, "title": title}
        if url:
            data["url"] = url
        out.append(data)
    return out, len(pairs)


def timed(classifier: Classifier, data: list[dict[str, str]]) -> float:
    classify = classifier.classify
    started = time.perf_counter()
    for item in data:
        classify(item)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payloads", type=int, default=200_000)
    parser.add_argument("--distinct", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    rules = load_default_ruleset()
    trusted_load = time.perf_counter() - started
    safety.clear_caches()
    started = time.perf_counter()
    RuleSet.parse(tomllib.loads(default_ruleset_text()))
    checked_load = time.perf_counter() - started

    data, distinct = payloads(args.payloads, args.distinct, args.seed)
    n = len(data)
    started = time.perf_counter()
    classifier = Classifier(rules)
    build = time.perf_counter() - started
    cold = timed(classifier, data)
    warm = timed(classifier, data)
    uncached_sample = data[:20_000]
    uncached = timed(Classifier(rules, cache_size=0), uncached_sample)

    counts: dict[tuple[str, ...], int] = {}
    for item in data:
        path = classifier.classify(item)
        counts[path] = counts.get(path, 0) + 1

    print(f"rule set: {len(rules)} categories, rules_version {rules.rules_version}")
    print(f"payloads: {n:,} over {distinct} distinct (app, title, url)")
    print(
        f"load defaults: trusted {trusted_load * 1000:.1f} ms (includes imports), "
        f"with save-time checks {checked_load * 1000:.0f} ms"
    )
    print(f"Classifier(): {build * 1000:.2f} ms")
    print(f"cold:     {cold:.3f} s  {n / cold:>12,.0f} classifications/s")
    print(f"warm:     {warm:.3f} s  {n / warm:>12,.0f} classifications/s")
    print(
        f"uncached: {uncached / len(uncached_sample) * 1e6:.1f} us per payload "
        f"({len(uncached_sample) / uncached:,.0f}/s): the cost of one cache miss"
    )
    print("classified as:")
    for path, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        print(f"  {count / n:6.1%}  {' > '.join(path)}")


if __name__ == "__main__":
    main()
