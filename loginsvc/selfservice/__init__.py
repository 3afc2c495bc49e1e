"""What account holders do for themselves: change their password, recover a forgotten one."""
