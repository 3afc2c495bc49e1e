"""Accounts: email-addressed users, password login, logout, session API and brute-force protection."""
