from ragline.cli.root import main

main()
