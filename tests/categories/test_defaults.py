"""The shipped default rule set: valid, safe, complete, and right on realistic samples."""

from __future__ import annotations

import tomllib

import pytest

from worklens.categories import (
    UNCATEGORIZED,
    Classifier,
    RegexRule,
    RuleSet,
    default_ruleset_text,
    load_default_ruleset,
)

FF = " — Mozilla Firefox"
CHROME = " - Google Chrome"

# (app, title, url) -> expected category path ("" = not in the payload)
SAMPLES: list[tuple[str, str, str, str]] = [
    # editors and IDEs
    ("Code", "classify.py - worklens - Visual Studio Code", "", "Work > Programming > Editors"),
    ("Code.exe", "main.rs - app - Visual Studio Code", "", "Work > Programming > Editors"),
    ("jetbrains-pycharm", "worklens \u2013 model.py", "", "Work > Programming > Editors"),
    ("Emacs", "*scratch*", "", "Work > Programming > Editors"),
    ("Gnome-terminal", "notes.txt (~/src) - NVIM", "", "Work > Programming > Editors"),
    # terminals
    ("Gnome-terminal", "me@host: ~/src/worklens", "", "Work > Programming > Terminals"),
    ("WindowsTerminal.exe", "Windows PowerShell", "", "Work > Programming > Terminals"),
    ("iTerm2", "zsh", "", "Work > Programming > Terminals"),
    ("kitty", "htop", "", "Work > Programming > Terminals"),
    # developer sites in a browser
    (
        "firefox",
        "worklens/main: monitoring · GitHub" + FF,
        "https://github.com/worklens/main",
        "Work > Programming > Developer sites",
    ),
    (
        "Google-chrome",
        "python - How to merge dicts - Stack Overflow" + CHROME,
        "",
        "Work > Programming > Developer sites",
    ),
    # office documents
    ("libreoffice-writer", "report.odt - LibreOffice Writer", "", "Work > Documents"),
    ("WINWORD.EXE", "Budget 2025.docx - Word", "", "Work > Documents"),
    (
        "firefox",
        "Q3 plan - Google Docs" + FF,
        "https://docs.google.com/document/d/1/edit",
        "Work > Documents",
    ),
    ("evince", "invoice.pdf", "", "Work > Documents"),
    # e-mail
    ("thunderbird", "Inbox - Local Folders - Mozilla Thunderbird", "", "Communication > Email"),
    ("OUTLOOK.EXE", "Inbox - ana@example.com - Outlook", "", "Communication > Email"),
    ("Mail", "Inbox \u2013 iCloud (12 messages)", "", "Communication > Email"),
    (
        "firefox",
        "Inbox (3) - ana@example.com - Gmail" + FF,
        "https://mail.google.com/mail/u/0/#inbox",
        "Communication > Email",
    ),
    # chat
    ("Slack", "general (Channel) - Acme - Slack", "", "Communication > Chat"),
    ("discord", "#help | Python - Discord", "", "Communication > Chat"),
    ("Signal", "Signal", "", "Communication > Chat"),
    ("firefox", "WhatsApp" + FF, "https://web.whatsapp.com/", "Communication > Chat"),
    ("Teams", "Chat | Ana Silva | Microsoft Teams", "", "Communication > Chat"),
    # meetings
    ("zoom", "Zoom Meeting", "", "Communication > Meetings"),
    ("Teams", "Weekly sync meeting | Microsoft Teams", "", "Communication > Meetings"),
    (
        "Google-chrome",
        "Meet - abc-defg-hij" + CHROME,
        "https://meet.google.com/abc-defg-hij",
        "Communication > Meetings",
    ),
    # video and music
    (
        "firefox",
        "Lofi beats to relax to - YouTube" + FF,
        "https://www.youtube.com/watch?v=jfKfPfyJRdk",
        "Media > Video",
    ),
    ("Google-chrome", "Netflix" + CHROME, "", "Media > Video"),
    ("vlc", "holiday.mp4 - VLC media player", "", "Media > Video"),
    ("Spotify", "Daft Punk - Harder, Better, Faster, Stronger", "", "Media > Music"),
    (
        "firefox",
        "Around the World - YouTube Music" + FF,
        "https://music.youtube.com/watch?v=1",
        "Media > Music",
    ),
    # social media
    ("firefox", "Home / X" + FF, "https://x.com/home", "Media > Social media"),
    ("firefox", "r/python" + FF, "https://www.reddit.com/r/python/", "Media > Social media"),
    ("Google-chrome", "(3) Feed | LinkedIn" + CHROME, "", "Media > Social media"),
    # news
    ("firefox", "Hacker News" + FF, "https://news.ycombinator.com/", "Media > News"),
    ("firefox", "World news" + FF, "https://www.bbc.co.uk/news/world", "Media > News"),
    # games
    ("steam", "Steam", "", "Media > Games"),
    ("steam_app_570", "Dota 2", "", "Media > Games"),
    # browsers on sites nobody categorised, and unknown apps
    ("firefox", "Weather forecast" + FF, "https://weather.example/", "Uncategorized"),
    ("Google-chrome", "New Tab" + CHROME, "", "Uncategorized"),
    (
        "gimp",
        "[logo] (imported)-1.0 (RGB color 8-bit gamma integer) \u2013 GIMP",
        "",
        "Uncategorized",
    ),
    # words that must not trigger a category
    ("firefox", "Cutting yourself some slack - a blog" + FF, "", "Uncategorized"),
    ("firefox", "HTML element reference" + FF, "https://example.org/html", "Uncategorized"),
    ("firefox", "Mail server setup guide" + FF, "", "Uncategorized"),
    ("firefox", "Files - Dropbox" + FF, "https://www.dropbox.com/home", "Uncategorized"),
]


@pytest.mark.parametrize(("app", "title", "url", "expected"), SAMPLES)
def test_default_rules_classify_realistic_samples(
    app: str, title: str, url: str, expected: str
) -> None:
    data = {"app": app, "title": title}
    if url:
        data["url"] = url
    path = Classifier(load_default_ruleset()).classify(data)
    assert " > ".join(path) == expected


def test_every_default_regex_passes_the_save_time_checks() -> None:
    # load_default_ruleset() trusts the file; parse it as an API save would.
    strict = RuleSet.parse(tomllib.loads(default_ruleset_text()))
    assert strict == load_default_ruleset()


def test_default_rules_cover_the_required_areas() -> None:
    rules = load_default_ruleset()
    names = {" > ".join(c.path) for c in rules.categories if isinstance(c.rule, RegexRule)}
    for needed in [
        "Uncategorized",
        "Work > Programming > Editors",
        "Work > Programming > Terminals",
        "Work > Documents",
        "Communication > Email",
        "Communication > Chat",
        "Communication > Meetings",
        "Media > Video",
        "Media > Social media",
        "Media > News",
        "Media > Games",
    ]:
        assert needed in names
    c = Classifier(rules)
    for category in rules.categories:
        assert c.productivity(category.path) in ("productive", "neutral", "unproductive")
        assert c.color(category.path).startswith("#")
    assert c.productivity(("Work", "Programming", "Editors")) == "productive"
    assert c.productivity(("Media", "Video")) == "unproductive"
    assert c.productivity(UNCATEGORIZED) == "neutral"
    # Every regex category has a colour of its own (distinct in charts).
    own = [c.color for c in rules.categories if isinstance(c.rule, RegexRule)]
    assert None not in own and len(set(own)) == len(own)


def test_default_browser_rule_is_shallowest() -> None:
    # Depth 1: every real category (depth >= 2) and any later depth-1 rule wins over it.
    rules = load_default_ruleset()
    first = rules.categories[0]
    assert first.path == UNCATEGORIZED
    assert all(
        c.depth >= 2 for c in rules.categories if isinstance(c.rule, RegexRule) and c is not first
    )


def test_defaults_load_once() -> None:
    assert load_default_ruleset() is load_default_ruleset()
