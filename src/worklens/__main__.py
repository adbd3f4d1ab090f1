from worklens.cli import main

main()
