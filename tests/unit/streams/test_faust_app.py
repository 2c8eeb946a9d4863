"""``HeadlessApp``: a Faust app that binds no web port, whatever ``faust worker`` sets."""

from __future__ import annotations

import pytest

faust = pytest.importorskip("faust", reason="faust-streaming is not installed")

from streams.integrations.faust import HeadlessApp  # noqa: E402 - after the importorskip


def test_headless_app_starts_no_web_server_even_when_faust_worker_enables_it(tmp_path) -> None:
    plain = faust.App("plain", web_enabled=False, autodiscover=False, datadir=str(tmp_path / "p"))
    headless = HeadlessApp("headless", web_enabled=False, autodiscover=False, datadir=str(tmp_path / "h"))
    for app in (plain, headless):
        app.conf.web_enabled = True  # what `faust worker` does with its --with-web default
    assert list(plain.boot_strategy.web_server())  # the web server would bind 0.0.0.0:6066
    assert list(headless.boot_strategy.web_server()) == []
