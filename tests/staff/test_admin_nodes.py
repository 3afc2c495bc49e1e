"""A deactivation made in the admin on one node ends the user's session at its very next request on another
node (real gunicorn nodes of two clusters sharing the database and Redis; the staff member signs in with a code)."""
from __future__ import annotations

from deploy.node import manage
from tests.mfa.conftest import enrol_by_shell
from tests.support import Browser

EMAIL, PASSWORD = "erin@example.test", "a long and careful password"
STAFF, STAFF_PASSWORD = "ops.erin@example.test", "the staff member's own long password"


def test_an_admin_deactivation_on_blue_ends_the_next_request_on_green(stack) -> None:
    blue, green = stack("blue-1", cluster="blue"), stack("green-1", cluster="green")
    manage(dict(blue.env, LOGINSVC_NEW_PASSWORD=PASSWORD), "create_user", EMAIL)  # an end user, not staff
    manage(dict(blue.env, LOGINSVC_NEW_PASSWORD=STAFF_PASSWORD), "create_user", STAFF, "--staff")
    app = enrol_by_shell(blue.env, STAFF)
    user_id = manage(blue.env, "shell", "-v", "0", "-c",
                     f"from loginsvc.accounts.models import User; print(User.objects.get(email={EMAIL!r}).pk)").stdout.strip()

    user = Browser(green.url)
    assert user.login(EMAIL, PASSWORD).status_code == 200
    assert user.whoami()["authenticated"] is True and user.whoami()["authenticated"] is True  # cached on green now

    staff = Browser(blue.url)
    assert staff.login(STAFF, STAFF_PASSWORD).json()["mfa_required"] is True
    assert staff.call("POST", "/api/login/mfa", json={"method": "totp", "code": app.now()},
                      headers={"X-CSRFToken": staff.csrf_token()}).status_code == 200
    assert staff.call("GET", "/admin/accounts/user/").status_code == 200
    done = staff.call("POST", "/admin/accounts/user/", data={
        "csrfmiddlewaretoken": staff.cookies["csrftoken"], "action": "deactivate", "_selected_action": user_id})
    assert done.status_code == 302 and done.headers["X-Served-By"] == "blue/blue-1"

    after = user.call("GET", "/api/session")
    assert after.headers["X-Served-By"] == "green/green-1" and after.json() == {"authenticated": False}
    assert user.login(EMAIL, PASSWORD).status_code == 401
