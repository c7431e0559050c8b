/**
 * livesnap: live snapshots of virtual machines.
 *
 * The `.lsnap` format (writer, streaming and random-access readers), the tools that inspect,
 * verify and convert snapshots, and a bundled RISC-V machine that takes live snapshots while its
 * guest keeps running.
 *
 * @module
 */
export const VERSION = "0.1.0";
