from polymuse.cli import main

main()
