"""A secret file is created once, safely: concurrent first starts all read the same secret, mode 0600."""
from __future__ import annotations


def _make_secret(path: str, q) -> None:
    import os
    os.environ.pop("CANARY_TEST_SECRET", None)
    os.environ["CANARY_TEST_SECRET_FILE"] = path
    from canary.config.secret import load_or_create_secret
    q.put(load_or_create_secret("CANARY_TEST_SECRET", "CANARY_TEST_SECRET_FILE", path))



def test_secret_file_race_gives_every_instance_the_same_secret(tmp_path):
    import multiprocessing
    import os
    import stat
    ctx = multiprocessing.get_context("fork")
    for round_ in range(3):
        path = str(tmp_path / f"s{round_}" / "secret")
        q = ctx.Queue()
        procs = [ctx.Process(target=_make_secret, args=(path, q)) for _ in range(8)]
        for p in procs:
            p.start()
        values = {q.get(timeout=10) for _ in procs}
        for p in procs:
            p.join(10)
        assert len(values) == 1 and all(values)
        assert open(path).read().strip() == values.pop()
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert os.listdir(os.path.dirname(path)) == ["secret"]     # no temp files left behind


def test_a_rotated_token_file_is_used_at_once_and_a_short_or_missing_one_is_refused(tmp_path, monkeypatch, caplog):
    """The admin token file is re-read when it changes (rotation without a restart); a token from the environment
    is fixed for the process, as the environment is."""
    import os

    from canary.config.secret import RotatingSecret
    path = tmp_path / "token"
    path.write_text("first-token-0123456789\n")
    monkeypatch.delenv("CANARY_TEST_SECRET", raising=False)
    monkeypatch.setenv("CANARY_TEST_SECRET_FILE", str(path))
    source = RotatingSecret("CANARY_TEST_SECRET", "CANARY_TEST_SECRET_FILE", "unused", "first-token-0123456789")
    assert source.current() == "first-token-0123456789"
    for content, expected in (("second-token-0123456789", "second-token-0123456789"),   # rotated
                              ("tiny-9", "second-token-0123456789"),                     # refused: kept
                              (None, "second-token-0123456789"),                         # removed: kept
                              ("third-token-0123456789", "third-token-0123456789")):
        staged = tmp_path / ".token.new"
        if content is None:
            path.unlink()
        else:
            staged.write_text(content + "\n")
            os.replace(staged, path)
        assert source.current() == expected
    assert "tiny-9" not in caplog.text and "shorter than 16" in caplog.text
    monkeypatch.setenv("CANARY_TEST_SECRET", "from-the-environment-01")
    fixed = RotatingSecret("CANARY_TEST_SECRET", "CANARY_TEST_SECRET_FILE", "unused", "from-the-environment-01")
    path.write_text("fourth-token-0123456789\n")
    assert fixed.current() == "from-the-environment-01"
