from stackemu.cli import main

main()
