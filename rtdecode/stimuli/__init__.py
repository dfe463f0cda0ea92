"""The stimulus library: natural photographs and synthetic movies, shared by the virtual rig and by
training (synthesised movies); imports nothing of rtdecode."""
