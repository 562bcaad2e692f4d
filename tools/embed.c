/* Build tool: prints a file as a C array definition, so interpreter
 * drivers stay real .py/.js sources in the tree.
 * usage: embed NAME FILE > out.inc */
#include <stdio.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: embed NAME FILE\n");
        return 2;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        perror(argv[2]);
        return 1;
    }
    printf("static const char %s[] = {", argv[1]);
    int c;
    unsigned long n = 0;
    while ((c = fgetc(f)) != EOF)
        printf("%s0x%02x,", n++ % 16 ? "" : "\n", (unsigned)c);
    printf("\n0x00};\n");
    fclose(f);
    return 0;
}
