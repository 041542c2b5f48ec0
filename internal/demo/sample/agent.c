/* upkit demo agent: a tiny device service used as the sample executable. */
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#ifndef AGENT_VERSION
#define AGENT_VERSION "1.0.0"
#endif
static unsigned crc32_tab(unsigned c, const unsigned char *p, size_t n) {
	c = ~c;
	while (n--) { c ^= *p++; for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1; }
	return ~c;
}
static int report(const char *what, unsigned v) { return printf("%s=%08x\n", what, v); }
#ifdef AGENT_V2
static int health_check(void) { const char *m = "sensors ok; link ok; storage ok"; return report("health", crc32_tab(0, (const unsigned char *)m, strlen(m))); }
#endif
int main(int argc, char **argv) {
	printf("upkit-demo-agent %s\n", AGENT_VERSION);
	for (int i = 1; i < argc; i++) report(argv[i], crc32_tab(0, (const unsigned char *)argv[i], strlen(argv[i])));
#ifdef AGENT_V2
	health_check();
#endif
	return 0;
}
