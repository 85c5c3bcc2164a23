import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { createServer } from 'node:net'

/** A free TCP port on loopback, found by listening on port 0. */
export async function freePort(): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  await once(server, 'close')
  return port
}

/** A throwaway `redis-server` on loopback, without persistence, that can be stopped and started again on its port. */
export class RedisServer {
  readonly port: number
  #child: ChildProcess | undefined

  private constructor(port: number) {
    this.port = port
  }

  static async start(): Promise<RedisServer> {
    const server = new RedisServer(await freePort())
    await server.restart()
    return server
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async restart(): Promise<void> {
    if (this.#child !== undefined) throw new Error('redis-server is already running')
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'yes',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    this.#child = child
    let output = ''
    await new Promise<void>((resolve, reject) => {
      const onData = (chunk: Buffer) => {
        output += chunk.toString()
        if (output.includes('Ready to accept connections')) {
          child.stdout?.off('data', onData)
          child.stdout?.resume()
          resolve()
        }
      }
      child.stdout?.on('data', onData)
      child.once('error', reject)
      child.once('exit', (code) => reject(new Error(`redis-server exited with ${code}: ${output}`)))
    })
  }

  /** Freezes redis-server (SIGSTOP): connections stay open, commands wait unanswered, as in a stall. */
  pause(): void {
    this.#child?.kill('SIGSTOP')
  }

  /** Lets a paused redis-server run again (SIGCONT); it then runs the commands that waited. */
  resume(): void {
    this.#child?.kill('SIGCONT')
  }

  async stop(): Promise<void> {
    const child = this.#child
    if (child === undefined) return
    this.#child = undefined
    if (child.exitCode !== null) return
    const exited = once(child, 'exit')
    child.kill('SIGTERM')
    await exited
  }
}
