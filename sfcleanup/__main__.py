from sfcleanup.cli import main

raise SystemExit(main())
