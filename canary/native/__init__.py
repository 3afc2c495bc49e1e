"""How the data plane runs: the mypyc build of canary/dataplane/ and the choice between it and the plain-Python source."""
