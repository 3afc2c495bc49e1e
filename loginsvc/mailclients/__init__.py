"""Mail clients: app passwords for IMAP and SMTP clients that cannot do OAuth, checked for the mail server."""
