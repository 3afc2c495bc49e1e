"""A secret file is created once, safely: concurrent first starts all read the same secret, mode 0600."""
from __future__ import annotations


def _make_secret(path: str, q) -> None:
    import os
    os.environ.pop("CANARY_TEST_SECRET", None)
    os.environ["CANARY_TEST_SECRET_FILE"] = path
    from canary.secret import load_or_create_secret
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
