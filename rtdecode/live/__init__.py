"""The live graph on top of the data flow: rig config, the stage graph, the loop (`session`),
`rtdecode run` and `rtdecode demo`."""
