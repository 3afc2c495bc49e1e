"""What the login service and the canary router both need, standard library only: address ranges, private files, back-off rules, SMTP URLs."""
