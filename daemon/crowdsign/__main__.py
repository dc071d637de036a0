from crowdsign.cli import main

raise SystemExit(main())
