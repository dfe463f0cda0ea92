from rtdecode.cli import main

raise SystemExit(main())
