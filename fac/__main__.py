from fac.cli import main

main()
