from nst_core.cli import main

raise SystemExit(main())
