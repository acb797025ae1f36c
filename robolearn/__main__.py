from robolearn.cli import main

raise SystemExit(main())
