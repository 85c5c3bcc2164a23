// Shared by bench/request-rules.ts and its server: the signing account and the allow-lists.
export const ACCOUNT = 'acme'
export const SECRET = 'bench-secret'
export const HOST = 'images7.example.com'

/** `count` allowed hosts: the bench host, a wildcard, then exact names and wildcards of other zones. */
export function allowedHosts(count: number): string[] {
  const hosts = [HOST, '*.cdn.example.net']
  for (let i = 0; hosts.length < count; i++)
    hosts.push(i % 4 === 0 ? `*.zone${i}.example.org` : `host${i}.example.org`)
  return hosts
}
