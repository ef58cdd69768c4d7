from eventssm.cli import main

main()
