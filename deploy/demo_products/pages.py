"""The demo products' HTML: plain pages, every value escaped, ids that the browser tests look for."""
from __future__ import annotations

from html import escape
from typing import Any

from deploy.demo_products import PRODUCTS

HTML = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
SECURITY_HEADERS = [
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),   # a callback URL holds a code: it must not travel onwards
]
STYLE = ("body{font-family:system-ui,sans-serif;max-width:40rem;margin:3rem auto;padding:0 1rem;color:#222}"
         "nav a{margin-right:1rem}button{font-size:1rem;padding:.3rem 1rem}.note{color:#555}")


def layout(title: str, body: str) -> bytes:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{STYLE}</style></head><body>{body}</body></html>").encode()


def product_links(current: str | None = None) -> str:
    links = [f'<a id="link-{cid}" href="/{cid}/">{escape(name)}</a>' for cid, name in PRODUCTS.items() if cid != current]
    return f"<nav>{''.join(links)}</nav>"


def index() -> bytes:
    return layout("Demo mail products", "<h1>Demo mail products</h1><p>Each product signs in through the login "
                  "service (OpenID Connect); sign in to one and the others follow.</p>" + product_links())


def product(client_id: str, user: dict[str, Any] | None, csrf: str, signed_out: bool) -> bytes:
    name = PRODUCTS[client_id]
    if user:
        who = escape(user.get("email") or user["sub"])
        if user.get("name") and user["name"] != user.get("email"):
            who += f" ({escape(user['name'])})"
        status = (f'<p id="status">signed in as {who}</p>'
                  f'<form method="post" action="/{client_id}/logout">'
                  f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
                  '<button id="sign-out" type="submit">Sign out</button></form>')
    else:
        note = '<p class="note" id="signed-out">You have signed out.</p>' if signed_out else ""
        status = f'{note}<p id="status">not signed in</p><p><a id="sign-in" href="/{client_id}/login">Sign in</a></p>'
    return layout(name, f'<h1 id="product">{escape(name)}</h1>{status}<h2>Other products</h2>'
                  f"{product_links(client_id)}")


def error(title: str, message: str, path: str) -> bytes:
    client_id = path.strip("/").split("/", 1)[0]
    back = (f'<p><a id="sign-in" href="/{client_id}/login">Sign in</a> · <a href="/{client_id}/">'
            f"{escape(PRODUCTS[client_id])}</a></p>") if client_id in PRODUCTS else '<p><a href="/">Products</a></p>'
    return layout(title, f'<h1>{escape(title)}</h1><p id="error">{escape(message)}</p>{back}')
