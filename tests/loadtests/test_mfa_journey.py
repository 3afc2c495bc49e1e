"""The MFA journey's pieces that need no stack: the load-test accounts' derived secrets (what the command and
every Locust process compute alike), which accounts have one, and the picking that never sends one account's
code twice in a 30-s step, across the processes of a run too."""
from __future__ import annotations

import base64
import hashlib
import hmac
from argparse import Namespace
from types import SimpleNamespace

import pytest

from loadtests import run_settings
from loadtests.pacing import CodeSteps
from loginsvc.accounts.load_users import email_of, totp_secret

PASSWORD = "a load-test password of some length"


def test_the_secret_is_the_hmac_of_the_address_under_the_password_in_base32() -> None:
    email = email_of(3)
    secret = totp_secret(PASSWORD, email)
    expected = hmac.new(PASSWORD.encode(), email.encode(), hashlib.sha256).digest()[:20]
    assert base64.b32decode(secret) == expected and len(secret) == 32   # 160 bits, no padding
    assert totp_secret(PASSWORD, email) == secret                      # any process, any machine
    assert totp_secret(PASSWORD, email_of(4)) != secret and totp_secret("another password!!", email) != secret


def test_the_code_sent_is_the_one_the_service_accepts_for_that_step() -> None:
    from loginsvc.mfa import totp

    secret, step = totp_secret(PASSWORD, email_of(0)), 58_000_000
    code = CodeSteps.code(secret, step)
    assert totp.matching_step(secret, code, now=step * 30 + 29) == step
    assert totp.matching_step(secret, code, now=(step + 1) * 30 + 5) == step   # a slow request: still accepted


def test_no_account_is_used_twice_in_a_step_and_the_least_recently_used_comes_next() -> None:
    accounts = [email_of(i) for i in range(3)]
    steps = CodeSteps(accounts)
    now = 100 * 30.0
    taken = [steps.take(now + i) for i in range(3)]
    assert taken == [(a, 100) for a in accounts]
    assert steps.take(now + 29) is None                          # all three sent this step's code
    assert steps.take(now + 30) == (accounts[0], 101)            # the next step frees them, oldest first
    assert steps.take(now + 31) == (accounts[1], 101)


@pytest.mark.parametrize("share", [1, 2, 3, 4])
def test_processes_take_disjoint_shares_that_cover_every_account(share: int) -> None:
    accounts = [email_of(i) for i in range(10)]
    parts = [CodeSteps(accounts, index, share).accounts for index in range(share)]
    assert sorted(a for part in parts for a in part) == sorted(accounts)
    assert sum(len(part) for part in parts) == len(accounts)


def test_none_for_a_process_without_accounts() -> None:
    assert CodeSteps([email_of(0)], 1, 2).take(0.0) is None


def options(accounts: str = "loadtest:50", mfa: int = -1, accounts_file: str = "") -> Namespace:
    return Namespace(lt_accounts=accounts, lt_mfa=mfa, lt_accounts_file=accounts_file)


def test_the_first_of_the_prefix_have_the_app_a_fifth_by_default() -> None:
    passwords = dict.fromkeys(run_settings.accounts("loadtest:50"), PASSWORD)
    secrets = run_settings.totp_secrets(options(), passwords)
    assert list(secrets) == [email_of(i) for i in range(10)] and run_settings.mfa_count(50) == 10
    assert secrets[email_of(9)] == totp_secret(PASSWORD, email_of(9))
    assert list(run_settings.totp_secrets(options(mfa=2), passwords)) == [email_of(0), email_of(1)]
    assert run_settings.totp_secrets(options(mfa=0), passwords) == {}
    with pytest.raises(ValueError, match="--lt-mfa: 50 of 50 accounts"):
        run_settings.totp_secrets(options(mfa=50), passwords)


def test_demo_and_file_accounts_sign_in_with_passwords_alone() -> None:
    assert run_settings.accounts("demo") == ["demo@example.test"]    # demo2 has an app whose secret only var/ holds
    assert run_settings.totp_secrets(options("demo"), {"demo@example.test": PASSWORD}) == {}
    assert run_settings.totp_secrets(options(accounts_file="accounts.txt"), {"a@example.test": PASSWORD}) == {}


def test_a_worker_takes_its_share_by_its_index_and_the_masters_expected_workers() -> None:
    class WorkerRunner:   # Locust's class name is what tells a worker apart
        worker_index = 2
    worker = SimpleNamespace(runner=WorkerRunner(), parsed_options=Namespace(expect_workers=4))
    assert run_settings.worker_share(worker) == (2, 4)
    assert run_settings.worker_share(SimpleNamespace(runner=object(), parsed_options=Namespace(expect_workers=4))) == (0, 1)


def test_the_password_journeys_never_pick_an_account_with_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(run_settings.PASSWORD_ENV, PASSWORD)
    run = run_settings.build(Namespace(lt_scenario="steady", lt_duration=10.0, lt_users=4, lt_rate=0.0, lt_slo=[],
                                 lt_kill="", lt_accounts="loadtest:10", lt_accounts_file="", lt_mfa=-1,
                                 lt_client_id="loadtest", lt_redirect_uri="http://127.0.0.1:9/cb",
                                 lt_post_logout_uri="http://127.0.0.1:9/"), share=(1, 2))
    assert run.password_accounts == [email_of(i) for i in range(2, 10)]
    assert run.codes.accounts == [email_of(1)]   # the second of two processes: every second account from 1
