"""`--accounts FILE`: existing accounts as `email:password` lines; a bad file is one line naming the line, never the password."""
from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest

from loadtests import accounts_file, run_settings

SECRET = "pass:word with spaces"


def written(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "accounts.txt"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_lines_comments_and_colons_in_passwords(tmp_path: Path) -> None:
    path = written(tmp_path, f"# staging accounts\n\nAnn@Example.test:{SECRET}\r\n  bob@example.test:b:c\n")
    assert accounts_file.read(path) == {"ann@example.test": SECRET, "bob@example.test": "b:c"}


@pytest.mark.parametrize("text, problem", [
    (f"ann@example.test:{SECRET}\nbob@example.test {SECRET.replace(':', '')}\n", "line 2: expected email:password"),
    (f"ann@example.test:{SECRET}\n\nann@example.test:\n", "line 3: expected email:password"),
    (f"{SECRET}@x:y\n", "line 1: the part before ':' is not an email address"),
    (f"ann@localhost:{SECRET}\n", "line 1: the part before ':' is not an email address"),
    (f"ann@example.test:{SECRET}\x00\n", "line 1: the password has a control character in it"),
    (f"ann@example.test:{SECRET}\n# again\nANN@example.test:{SECRET}\n", "line 3: ann@example.test is already on line 1"),
    ("# only a comment\n", "no accounts in it (one email:password a line)"),
])
def test_a_bad_line_is_named_by_number_and_the_password_never_shown(tmp_path: Path, text: str, problem: str) -> None:
    path = written(tmp_path, text)
    with pytest.raises(accounts_file.AccountsFileError) as raised:
        accounts_file.read(path)
    message = str(raised.value)
    assert message == f"{path}: {problem}" and "\n" not in message
    assert SECRET not in message and "word with spaces" not in message


def test_more_than_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(accounts_file, "MAX_ACCOUNTS", 2)
    path = written(tmp_path, "".join(f"u{i}@example.test:{SECRET}\n" for i in range(3)))
    with pytest.raises(accounts_file.AccountsFileError, match="line 3: more than 2 accounts"):
        accounts_file.read(path)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_a_file_others_can_open_is_refused_like_an_ssh_key(tmp_path: Path, mode: int) -> None:
    path = written(tmp_path, f"ann@example.test:{SECRET}\n", mode)
    with pytest.raises(accounts_file.AccountsFileError, match=f"open to group or others \\(mode {mode:o}\\)"):
        accounts_file.read(path)


def test_a_missing_or_binary_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(accounts_file.AccountsFileError, match="cannot read it"):
        accounts_file.read(tmp_path / "absent")
    path = written(tmp_path, "")
    path.write_bytes(b"\xff\xfeann")
    with pytest.raises(accounts_file.AccountsFileError, match="not UTF-8"):
        accounts_file.read(path)


def test_locust_takes_each_account_with_its_own_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(run_settings.PASSWORD_ENV, "the shared one is not used")
    path = written(tmp_path, f"ann@example.test:{SECRET}\nbob@example.test:other\n")
    options = Namespace(lt_accounts="loadtest:50", lt_accounts_file=str(path))
    assert run_settings.credentials(options) == {"ann@example.test": SECRET, "bob@example.test": "other"}
    generated = run_settings.credentials(Namespace(lt_accounts="loadtest:2", lt_accounts_file=""))
    assert generated == dict.fromkeys(["loadtest-0000@loadtest.example.test", "loadtest-0001@loadtest.example.test"],
                                      "the shared one is not used")
