/* Every UCP declaration Atoll binds (ucp.h includes the ucs types it needs). */
#include <ucp/api/ucp.h>
