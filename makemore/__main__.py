from makemore.cli import console

console()
