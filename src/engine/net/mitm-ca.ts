// A fresh certificate authority per sandbox for TLS interception (spec 4.4). Deviation: ECDSA
// P-256 instead of RSA-2048 (same trust, keys in milliseconds instead of seconds). The CA key
// never leaves engine memory; the guest gets only the certificate.
import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { randomBytes, webcrypto } from "node:crypto";
import { isIP } from "node:net";
import { createSecureContext, type SecureContext } from "node:tls";

type KeyPair = webcrypto.CryptoKeyPair;
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALG = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

/** Leaves kept per sandbox; issuing one again costs a signature (about a millisecond). */
export const MAX_CACHED_LEAVES = 256;

export class MitmCa {
  private readonly contexts = new Map<string, Promise<SecureContext>>();

  private constructor(
    private readonly caCert: x509.X509Certificate,
    private readonly caKeys: KeyPair,
    private readonly leafKeys: KeyPair,
    private readonly leafKeyPem: string,
  ) {}

  static async create(label: string): Promise<MitmCa> {
    const caKeys = (await webcrypto.subtle.generateKey(ALG, false, ["sign", "verify"])) as KeyPair;
    const leafKeys = (await webcrypto.subtle.generateKey(ALG, true, ["sign", "verify"])) as KeyPair;
    const now = Date.now();
    const caCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serial(),
      name: `CN=Matchlock sandbox CA ${label}, O=Matchlock`,
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now + 3650 * DAY_MS),
      keys: caKeys,
      signingAlgorithm: ALG,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey),
      ],
    });
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", leafKeys.privateKey));
    const leafKeyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString("base64").replace(/.{64}/g, "$&\n")}\n-----END PRIVATE KEY-----\n`;
    return new MitmCa(caCert, caKeys, leafKeys, leafKeyPem);
  }

  get certificatePem(): string {
    return this.caCert.toString("pem") + "\n";
  }

  /**
   * A TLS context presenting a leaf for `name`, chained to this CA. The most recently used
   * MAX_CACHED_LEAVES are kept: a sandbox allowed "*" could otherwise grow the cache without bound.
   */
  contextFor(name: string): Promise<SecureContext> {
    let ctx = this.contexts.get(name);
    if (ctx) {
      this.contexts.delete(name); // re-inserted last: a Map iterates in insertion order
    } else {
      ctx = this.issue(name).then((leafPem) => createSecureContext({ key: this.leafKeyPem, cert: leafPem + this.certificatePem }));
      if (this.contexts.size >= MAX_CACHED_LEAVES) this.contexts.delete(this.contexts.keys().next().value!);
    }
    this.contexts.set(name, ctx);
    return ctx;
  }

  /** How many names have a leaf cached (for tests). */
  get cachedLeaves(): number {
    return this.contexts.size;
  }

  private async issue(name: string): Promise<string> {
    const now = Date.now();
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${name.replace(/[,=+<>#;"\\]/g, "")}`,
      issuer: this.caCert.subject,
      notBefore: new Date(now - 5 * 60_000),
      notAfter: new Date(now + 365 * DAY_MS),
      signingKey: this.caKeys.privateKey,
      publicKey: this.leafKeys.publicKey,
      signingAlgorithm: ALG,
      extensions: [
        new x509.SubjectAlternativeNameExtension([{ type: isIP(name) ? "ip" : "dns", value: name }]),
        new x509.ExtendedKeyUsageExtension([SERVER_AUTH]),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.BasicConstraintsExtension(false, undefined, true),
        await x509.AuthorityKeyIdentifierExtension.create(this.caCert),
      ],
    });
    return leaf.toString("pem") + "\n";
  }
}

function serial(): string {
  // Positive, 16 random bytes.
  const b = randomBytes(16);
  b[0] = b[0]! & 0x7f;
  return b.toString("hex");
}
