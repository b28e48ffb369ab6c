from vantage.cli import main

raise SystemExit(main())
