"""A recovery asked through blue finishes through green, and killing blue right after the ask loses nothing:
codes and the mail outbox live in the database both clusters share (real gunicorn nodes, real SMTP)."""
from __future__ import annotations

import re

from aiosmtpd.controller import Controller

from deploy.node import free_port
from tests.conftest import create_user_in
from tests.support import Browser, Mailbox, wait_for

EMAIL, PASSWORD, NEW_PASSWORD = "dora@example.test", "a long and careful password", "another long careful password"


def test_a_recovery_asked_on_blue_finishes_on_green_after_blue_is_killed(stack) -> None:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        # A short SMTP timeout keeps the lease of a delivery blue may die in the middle of short too.
        env = {"EMAIL_URL": f"smtp://127.0.0.1:{port}", "LOGINSVC_MAIL_TIMEOUT_SECONDS": "1"}
        blue = stack("blue-1", cluster="blue", **env)
        green = stack("green-1", cluster="green", **env)
        create_user_in(blue, EMAIL, PASSWORD)
        browser = Browser(blue.url)
        asked = browser.call("POST", "/api/recover", json={"email": EMAIL}, headers={"X-CSRFToken": browser.csrf_token()})
        assert asked.status_code == 202 and asked.headers["X-Served-By"] == "blue/blue-1"
        blue.kill()
        wait_for(lambda: mailbox.messages, 30, "the code's mail, from whichever node delivers it")
        [code] = re.findall(r"^ +(\d{8})\s*$", mailbox.messages[0], re.MULTILINE)
        done = browser.call("POST", "/api/recover/confirm", green.url, headers={"X-CSRFToken": browser.csrf_token()},
                            json={"email": EMAIL, "code": code, "new_password": NEW_PASSWORD})
        assert done.status_code == 200, done.text
        assert done.headers["X-Served-By"] == "green/green-1"
        assert Browser(green.url).login(EMAIL, NEW_PASSWORD).status_code == 200
        assert len([m for m in mailbox.messages if "recovery code" in m]) == 1   # the code went out once
    finally:
        controller.stop()
