"""``python docs/check_site.py docs/_build/html``: the built site, checked (``nox -s docs``).

1. The API reference lists every name of ``tinycnn_xp.__all__``, each with a page of its own
   that documents it (its entry is there, no directive was left as text).
2. In headless Chromium (Debian's ``chromium`` and ``chromium-driver``, driven by Selenium, the
   site served on 127.0.0.1), every page loads with no console error and every image on it has
   loaded (a non-zero natural width).

Exit status 0 when both hold, 1 when one fails, 2 when no browser is installed (the reason is
printed: the session skips the browser check then, and CI installs one).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
NO_BROWSER = 2


def check_api(build: Path) -> list[str]:
    """Problems with the API reference (none: an empty list)."""
    sys.path.insert(0, str(ROOT))
    import tinycnn_xp
    page = (build / "api.html").read_text(encoding="utf-8")
    problems = []
    for name in tinycnn_xp.__all__:
        if f"generated/tinycnn_xp.{name}.html" not in page:
            problems.append(f"api.html does not link tinycnn_xp.{name}")
        elif not (stub := build / "generated" / f"tinycnn_xp.{name}.html").is_file():
            problems.append(f"no page generated/tinycnn_xp.{name}.html")
        elif f'id="tinycnn_xp.{name}"' not in (text := stub.read_text(encoding="utf-8")):
            problems.append(f"generated/tinycnn_xp.{name}.html does not document {name}")
        elif ".. auto" in text:
            problems.append(f"generated/tinycnn_xp.{name}.html shows a directive as text")
    print(f"API reference: {len(tinycnn_xp.__all__) - len(problems)} of {len(tinycnn_xp.__all__)} "
          "public names listed, each with its page")
    return problems


def find_browser() -> tuple[str, str] | str:
    """``(chromium, chromedriver)`` paths, or why there are none."""
    browser = next((path for name in CHROMIUM if (path := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        return ("no headless browser: install Debian's chromium and chromium-driver "
                f"(found chromium: {browser or 'no'}, chromedriver: {driver or 'no'})")
    return browser, driver


def check_pages(build: Path, browser: str, driver_path: str) -> list[str]:
    """Load every page; problems (console errors, images that did not load)."""
    from selenium import webdriver
    from selenium.webdriver.support.ui import WebDriverWait

    handler = functools.partial(_QuietHandler, directory=str(build))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    profile = tempfile.mkdtemp(prefix="tinycnn-docs-")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-quic", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_path),
                              options=options)
    pages = sorted(p for p in build.rglob("*.html")
                   if p.relative_to(build).parts[0] not in ("_static", "_sources", "_images"))
    problems, figures, errors = [], 0, 0
    try:
        for page in pages:
            relative = page.relative_to(build).as_posix()
            driver.get(f"http://127.0.0.1:{server.server_address[1]}/{relative}")
            WebDriverWait(driver, 30).until(
                lambda d: d.execute_script("return document.readyState") == "complete")
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth])")
            figures += len(images)
            problems += [f"{relative}: image {src} did not load" for src, done, width in images
                         if not (done and width > 0)]
            logged = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            errors += len(logged)
            problems += [f"{relative}: console error: {entry['message'][:200]}" for entry in logged]
    finally:
        driver.quit()
        server.shutdown()
        shutil.rmtree(profile, ignore_errors=True)
    print(f"browser: {len(pages)} pages loaded in headless Chromium, {figures} images "
          f"({sum('did not load' in p for p in problems)} not loaded), {errors} console errors")
    return problems


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the base class names it format
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", type=Path, help="the built HTML folder")
    args = parser.parse_args(argv)
    problems = check_api(args.build)
    found = find_browser()
    if isinstance(found, str):
        for problem in problems:
            print(problem, file=sys.stderr)
        print(found)
        return 1 if problems else NO_BROWSER
    problems += check_pages(args.build, *found)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
